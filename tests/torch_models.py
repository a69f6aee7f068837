"""Small torch models for the torch.compile backend tests (CPU in CI, CUDA on the device):
each a pattern the backend must fuse, fall back around, or keep exact (mutations)."""
import torch, torch.nn as nn, torch.nn.functional as F
class MLP(nn.Module):
    def __init__(s, d=32, h=64):
        super().__init__(); s.fc1 = nn.Linear(d, h); s.ln = nn.LayerNorm(h); s.fc2 = nn.Linear(h, d)
    def forward(s, x):
        return s.fc2(F.gelu(s.ln(s.fc1(x))))
class RMSNorm(nn.Module):
    def __init__(s, d, eps=1e-6):
        super().__init__(); s.w = nn.Parameter(torch.ones(d) + 0.1 * torch.randn(d)); s.eps = eps
    def forward(s, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + s.eps) * s.w
class Block(nn.Module):
    def __init__(s, d=32, heads=4):
        super().__init__(); s.h = heads; s.n1 = RMSNorm(d); s.qkv = nn.Linear(d, 3 * d, bias=False)
        s.o = nn.Linear(d, d, bias=False); s.n2 = RMSNorm(d)
        s.gate = nn.Linear(d, 2 * d, bias=False); s.up = nn.Linear(d, 2 * d, bias=False); s.down = nn.Linear(2 * d, d, bias=False)
    def forward(s, x):
        B, T, D = x.shape
        q, k, v = s.qkv(s.n1(x)).split(D, dim=-1)
        q, k, v = (t.view(B, T, s.h, D // s.h).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (D // s.h) ** 0.5)
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, D)
        x = x + s.o(y)
        h = s.n2(x)
        return x + s.down(F.silu(s.gate(h)) * s.up(h))
class ConvTail(nn.Module):
    def __init__(s):
        super().__init__(); s.conv = nn.Conv2d(3, 8, 3, padding=1); s.b = nn.Parameter(torch.randn(8, 1, 1))
    def forward(s, x):
        return F.max_pool2d(torch.relu(s.conv(x) + s.b) * 0.5, 2)
class BN(nn.Module):
    def __init__(s):
        super().__init__(); s.fc = nn.Linear(16, 16); s.bn = nn.BatchNorm1d(16)
    def forward(s, x):
        return torch.tanh(s.bn(s.fc(x)))
class IntBool(nn.Module):
    def forward(s, x, idx):
        m = x > 0
        cnt = m.sum(dim=1)
        y = torch.where(m, x, x * 0.1) + (idx % 3).to(x.dtype)
        trunc = torch.div(idx * 7 - 20, 3, rounding_mode="trunc") + torch.div(
            idx - 4, -3, rounding_mode="trunc")
        return (y, cnt, (idx * 2 + 1) // 3, torch.sign(x) * y, m.any(dim=1), m.all(dim=0),
                (idx > 0).all(), trunc)
class InPlace(nn.Module):
    def __init__(s):
        super().__init__(); s.register_buffer("acc", torch.zeros(16))
    def forward(s, x):
        y = x.clone(); y.mul_(2).add_(1); y.relu_()
        s.acc.add_(y.sum(0))
        return y


class Unsupported(nn.Module):
    """sort has no fusec lowering: aten runs it, fusec fuses around it (the cumsum, a scan,
    and its gradient, a reversed one, included)."""
    def forward(s, x):
        y = torch.exp(x * 0.5) + 1
        z = torch.cumsum(y, dim=1)
        v, _ = torch.sort(z * y, dim=1)
        return torch.tanh(v) - y


# name -> (model factory, inputs(batch, dtype), trains)
class GroupNormSiLU(nn.Module):
    def __init__(s):
        super().__init__(); s.gn = nn.GroupNorm(4, 16)
    def forward(s, x):
        return F.silu(s.gn(x))
class EmbeddingGather(nn.Module):
    """Embedding (a padding row) and gather: their backwards are scatters with accumulation
    (index_put, scatter_add), run as fusec kernels of their own (fusec/dynamo/library.py)."""
    def __init__(s):
        super().__init__(); s.e = nn.Embedding(50, 24, padding_idx=3); s.ln = nn.LayerNorm(24)
    def forward(s, idx, x, lab):
        y = s.ln(s.e(idx)) * x
        return y.reshape(-1, 24).gather(1, lab) * 2.0, y
MODELS = {
    "mlp_gelu_layernorm": (MLP, lambda b, dt: (torch.randn(b, 32, dtype=dt),), True),
    "transformer_block": (Block, lambda b, dt: (torch.randn(b, 5, 32, dtype=dt),), True),
    "conv_bias_relu_pool": (ConvTail, lambda b, dt: (torch.randn(b, 3, 9, 9, dtype=dt),), True),
    "batchnorm_train": (BN, lambda b, dt: (torch.randn(b, 16, dtype=dt),), True),
    "groupnorm_silu": (GroupNormSiLU, lambda b, dt: (torch.randn(b, 16, 5, 7, dtype=dt),),
                       True),
    "embedding_gather": (EmbeddingGather, lambda b, dt: (
        torch.randint(0, 50, (b, 9)), torch.randn(b, 9, 24, dtype=dt),
        torch.randint(0, 24, (b * 9, 3))), True),
    "int_bool": (IntBool, lambda b, dt: (torch.randn(b, 7, dtype=dt),
                                          torch.arange(b * 7).view(b, 7) - 9), False),
    "inplace": (InPlace, lambda b, dt: (torch.randn(b, 16, dtype=dt),), False),
    "unsupported_ops": (Unsupported, lambda b, dt: (torch.randn(b, 13, dtype=dt),), True),
}


TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3, torch.float64: 1e-12}


def _close(got, eager, gold, what):
    """fusec's result against a float64 eager run, allowed 4x eager's own error in this
    dtype plus the dtype's rounding (integer results: equal to eager)."""
    assert got.shape == eager.shape and got.dtype == eager.dtype, (
        f"{what}: {got.dtype}{list(got.shape)} vs eager {eager.dtype}{list(eager.shape)}")
    if not got.dtype.is_floating_point:
        assert torch.equal(got.cpu(), eager.cpu()), f"{what}: differs from eager"
        return
    got, eager, gold = (t.detach().double().cpu() for t in (got, eager, gold))
    err, eager_err = (got - gold).abs().max().item(), (eager - gold).abs().max().item()
    bound = 4 * eager_err + TOL[eager.dtype] * (1 + gold.abs().max().item())
    assert err <= bound, f"{what}: error {err:.3g} > {bound:.3g} (eager's own {eager_err:.3g})"


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


def check_against_eager(name, dtype=torch.float32, device="cpu", batch=8, **options):
    """Compile MODELS[name] with backend=fusec (strict: no silent fallback), run forward
    (and backward when it trains) and compare outputs, gradients and buffers with eager in
    `dtype` and in float64. Returns the compiled model and its inputs' maker."""
    import copy

    import fusec
    factory, make, trains = MODELS[name]
    torch.manual_seed(0)
    model = factory().to(device)
    gold_model = copy.deepcopy(model).double()
    model = model.to(dtype)
    eager_model = copy.deepcopy(model)
    inputs = make(batch, dtype)

    def prepared(target_dtype):
        out = []
        for t in inputs:               # leaves of their own: gradients do not mix
            if t.dtype.is_floating_point:
                t = t.to(device, target_dtype).clone().requires_grad_(trains)
            else:
                t = t.to(device).clone()
            out.append(t)
        return out
    compiled = torch.compile(model, backend=fusec.torch_backend(strict=True, **options))
    args, eager_args, gold_args = prepared(dtype), prepared(dtype), prepared(torch.float64)
    outs = _as_tuple(compiled(*args))
    eager_outs, gold_outs = _as_tuple(eager_model(*eager_args)), _as_tuple(gold_model(*gold_args))
    for k, (o, e, g) in enumerate(zip(outs, eager_outs, gold_outs)):
        _close(o, e, g, f"{name} output {k}")
    if trains:
        weight = torch.randn(outs[0].shape, generator=torch.Generator().manual_seed(1))
        for o in (outs, eager_outs, gold_outs):
            (o[0] * weight.to(o[0].device, o[0].dtype)).sum().backward()
        for (pname, p), (_, e), (_, g) in zip(model.named_parameters(),
                                              eager_model.named_parameters(),
                                              gold_model.named_parameters()):
            _close(p.grad, e.grad, g.grad, f"{name} grad of {pname}")
        for k, (a, e, g) in enumerate(zip(args, eager_args, gold_args)):
            if a.grad is not None:
                _close(a.grad, e.grad, g.grad, f"{name} grad of input {k}")
    for (bname, b), (_, e), (_, g) in zip(model.named_buffers(), eager_model.named_buffers(),
                                          gold_model.named_buffers()):
        _close(b, e, g, f"{name} buffer {bname}")
    return compiled, make
