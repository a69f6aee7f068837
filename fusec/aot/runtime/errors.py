"""The errors a package raises (independent of fusec's own: the package runs without it)."""


class PackageError(RuntimeError):
    """The package itself is unusable here: a bad manifest, a changed artifact, a variant
    this machine cannot run."""


class ManifestError(PackageError):
    """manifest.json is missing, not JSON, of another schema version, or malformed."""


class ChecksumError(PackageError):
    """An artifact's bytes do not match the sha256 the manifest records."""


class NoMatchingVariantError(ValueError):
    """The call's arguments fit none of the variants the package was built with."""


class LaunchError(RuntimeError):
    """A launch failed (driver error, no GPU, unsupported CPU)."""
