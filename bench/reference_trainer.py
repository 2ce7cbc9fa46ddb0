#!/usr/bin/env python3
"""The plain-PyTorch reference beside bench_train_throughput: the same model, batches and schedule.

bench_train_throughput --dump-batches DIR writes DIR/model.json (hyper-parameters, training settings,
moe's parameter shapes) and DIR/batches.bin (every micro-batch of its run, from the trainer's own
batcher). This program builds the same transformer in plain PyTorch -- shared embeddings and output
projection, sinusoidal positions, pre- or post-LN, F.scaled_dot_product_attention, MoE layers with a
GShard top-2 router (capacity, Gumbel-sampled second expert, balance loss) run as a Mixtral-style loop
over experts, label-smoothed cross-entropy, fused AdamW with fairseq's inverse-square-root schedule,
bf16 autocast on CUDA -- checks that its parameters have moe's names and shapes one for one and that
the routing settings are the ones it implements, trains on the same
batches (warm-up, then the timed updates) and prints the same table row. --compile wraps the model
in torch.compile (dynamic shapes: every batch has its own length).

Host reads: one per MoE layer call (the experts' row counts, as moe's layout reads them); the losses
are summed on the device and read once at the end (moe reads once per update as well, to decide on
skipping a non-finite update). Initial values are drawn as nn.Linear/nn.Embedding do, not as moe
does: the parameter names and shapes are checked, not the values.

    python3 bench/reference_trainer.py DIR [--compile] [--json OUT]
"""

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_batches(path):
    raw = np.fromfile(path, dtype="<i8")
    count, pos, out = int(raw[0]), 1, []
    for _ in range(count):
        b, s, t = (int(v) for v in raw[pos:pos + 3])
        pos += 3
        parts = []
        for rows, cols in ((b, s), (b, t), (b, t)):
            parts.append(torch.from_numpy(raw[pos:pos + rows * cols].reshape(rows, cols).copy()))
            pos += rows * cols
        out.append(tuple(parts))
    if pos != raw.size:
        sys.exit(f"reference_trainer: {path} has {raw.size - pos} trailing values: not a batches.bin")
    return out


def sinusoidal(num, d):
    half = d // 2
    freq = torch.exp(torch.arange(half, dtype=torch.float) * -(math.log(10000.0) / (half - 1)))
    angles = torch.arange(num, dtype=torch.float)[:, None] * freq[None, :]
    table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    return F.pad(table, (0, d - 2 * half))


class Attention(nn.Module):
    def __init__(self, d, heads, dropout):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, memory, key_padding, causal):
        b, lq, d = x.shape
        h = self.heads

        def split(t):
            return t.view(b, -1, h, d // h).transpose(1, 2)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(memory)), split(self.v_proj(memory))
        mask = None if key_padding is None else ~key_padding[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(y.transpose(1, 2).reshape(b, lq, d))


class FFN(nn.Module):
    """One expert or the dense FFN: w1 [d, h], b1, w2 [h, d], b2 (moe's layout)."""

    def __init__(self, d, hidden, activation_dropout):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(d, hidden).uniform_(-d ** -0.5, d ** -0.5))
        self.b1 = nn.Parameter(torch.empty(hidden).uniform_(-d ** -0.5, d ** -0.5))
        self.w2 = nn.Parameter(torch.empty(hidden, d).uniform_(-hidden ** -0.5, hidden ** -0.5))
        self.b2 = nn.Parameter(torch.empty(d).uniform_(-hidden ** -0.5, hidden ** -0.5))
        self.activation_dropout = activation_dropout

    def forward(self, x):
        h = F.dropout(F.relu(torch.addmm(self.b1, x, self.w1)), self.activation_dropout, self.training)
        return torch.addmm(self.b2, h, self.w2)


class DenseSlot(nn.Module):
    def __init__(self, d, hidden, activation_dropout):
        super().__init__()
        self.ffn = FFN(d, hidden, activation_dropout)

    def forward(self, x, padding):
        return self.ffn(x.reshape(-1, x.shape[-1])).view_as(x), None


class GShardSlot(nn.Module):
    """Top-2 gating as fairseq's top2gating (GShard): softmax gates, the second expert sampled with
    Gumbel noise, capacity floor(γ·k·ceil(T/E)) filled top-1 first, padding rows given no expert
    (fairseq's input mask, moe's moe.mask_padding), the two gates renormalised, balance loss
    E·Σ_e mean(gate_e)·mean(top-1 = e); experts run in a loop over experts."""

    def __init__(self, d, hidden, experts, capacity_factor, activation_dropout):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(FFN(d, hidden, activation_dropout) for _ in range(experts))
        self.capacity_factor = capacity_factor

    def forward(self, x, padding):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        t, e = x.shape[0], len(self.experts)
        logits = self.router(x).float()
        gates = logits.softmax(-1)
        first = logits.argmax(-1)
        mask1 = F.one_hot(first, e)
        if self.training:
            noise = -torch.log(-torch.log(torch.rand_like(logits).clamp_min(1e-20)))
            second = (logits + noise).masked_fill(mask1.bool(), float("-inf")).argmax(-1)
        else:
            second = logits.masked_fill(mask1.bool(), float("-inf")).argmax(-1)
        mask2 = F.one_hot(second, e)
        real = (~padding.reshape(-1)).long()[:, None]
        mask1, mask2 = mask1 * real, mask2 * real
        capacity = min(t, math.floor(self.capacity_factor * 2 * ((t + e - 1) // e)))
        loc1 = torch.cumsum(mask1, 0) - 1
        loc2 = torch.cumsum(mask2, 0) - 1 + mask1.sum(0, keepdim=True)
        keep1 = ((loc1 * mask1).sum(-1) < capacity) & mask1.bool().any(-1)
        keep2 = ((loc2 * mask2).sum(-1) < capacity) & mask2.bool().any(-1)
        g1, g2 = gates.gather(1, first[:, None])[:, 0], gates.gather(1, second[:, None])[:, 0]
        g1, g2 = g1 * keep1, g2 * keep2
        denom = (g1 + g2).clamp_min(torch.finfo(g1.dtype).eps)
        g1, g2 = g1 / denom, g2 / denom
        aux = (gates.mean(0) * mask1.float().mean(0)).sum() * e
        tokens = torch.cat([torch.arange(t, device=x.device)] * 2)
        chosen = torch.cat([torch.where(keep1, first, e), torch.where(keep2, second, e)])  # e: dropped
        weights = torch.cat([g1, g2])
        # Mixtral-style loop over experts with the rows grouped by one sort: one read of the counts
        # per layer (the split sizes), as moe's layout makes one.
        order = torch.argsort(chosen, stable=True)
        counts = torch.zeros(e + 1, dtype=torch.long, device=x.device).scatter_add_(
            0, chosen, torch.ones_like(chosen)).tolist()
        out = torch.zeros_like(x)
        for i, rows in enumerate(torch.split(order, counts)[:e]):
            if counts[i] == 0:
                continue
            y = self.experts[i](x[tokens[rows]])
            out.index_add_(0, tokens[rows], (y * weights[rows, None]).to(out.dtype))
        return out.view(shape), aux


class Layer(nn.Module):
    def __init__(self, m, slot, decoder):
        super().__init__()
        d = m["d_model"]
        self.pre_norm, self.dropout = m["pre_norm"], m["dropout"]
        self.self_attn = Attention(d, m["heads"], m["attention_dropout"])
        self.self_attn_norm = nn.LayerNorm(d)
        if decoder:
            self.cross_attn = Attention(d, m["heads"], m["attention_dropout"])
            self.cross_attn_norm = nn.LayerNorm(d)
        self.ffn_norm = nn.LayerNorm(d)
        self.ffn = slot

    def block(self, x, norm, fn):
        y = fn(norm(x) if self.pre_norm else x)
        aux = None
        if isinstance(y, tuple):
            y, aux = y
        x = x + F.dropout(y, self.dropout, self.training)
        return (x if self.pre_norm else norm(x)), aux

    def forward(self, x, padding, memory=None, memory_padding=None):
        x, _ = self.block(x, self.self_attn_norm,
                          lambda h: self.self_attn(h, h, None if memory is not None else padding, memory is not None))
        if memory is not None:
            x, _ = self.block(x, self.cross_attn_norm, lambda h: self.cross_attn(h, memory, memory_padding, False))
        return self.block(x, self.ffn_norm, lambda h: self.ffn(h, padding))


class Transformer(nn.Module):
    def __init__(self, m):
        super().__init__()
        d, pad = m["d_model"], m["padding_idx"]
        self.m, self.pad = m, pad
        self.embed = nn.Embedding(m["vocab_size"], d, padding_idx=pad)
        nn.init.normal_(self.embed.weight, 0, d ** -0.5)
        self.register_buffer("positions", sinusoidal(m["max_positions"], d), persistent=False)

        def slot(index, decoder):
            moe = index in (m["moe_decoder_layers"] if decoder else m["moe_encoder_layers"])
            if not moe:
                return DenseSlot(d, m["ffn_hidden"], m["activation_dropout"])
            return GShardSlot(d, m["expert_hidden"], m["num_experts"], m["capacity_factor"],
                              m["activation_dropout"])

        self.encoder = nn.ModuleList(Layer(m, slot(i, False), False) for i in range(m["encoder_layers"]))
        self.decoder = nn.ModuleList(Layer(m, slot(i, True), True) for i in range(m["decoder_layers"]))
        if m["pre_norm"]:
            self.encoder_norm, self.decoder_norm = nn.LayerNorm(d), nn.LayerNorm(d)

    def embed_tokens(self, ids):
        x = self.embed(ids) * (self.m["d_model"] ** 0.5 if self.m["scale_embedding"] else 1.0)
        x = x + self.positions[: ids.shape[1]]
        return F.dropout(x, self.m["dropout"], self.training)

    def forward(self, source, target_input):
        src_pad, tgt_pad = source.eq(self.pad), target_input.eq(self.pad)
        aux = []
        x = self.embed_tokens(source)
        for layer in self.encoder:
            x, a = layer(x, src_pad)
            aux.append(a)
        memory = self.encoder_norm(x) if self.m["pre_norm"] else x
        y = self.embed_tokens(target_input)
        for layer in self.decoder:
            y, a = layer(y, tgt_pad, memory, src_pad)
            aux.append(a)
        if self.m["pre_norm"]:
            y = self.decoder_norm(y)
        aux = [a for a in aux if a is not None]
        return F.linear(y, self.embed.weight), (sum(aux) if aux else None)


def label_smoothed_loss(logits, target, epsilon, pad):
    lprobs = F.log_softmax(logits.float(), -1).view(-1, logits.shape[-1])
    target = target.reshape(-1)
    keep = target.ne(pad)
    nll = -lprobs.gather(1, target.clamp_min(0)[:, None])[:, 0]
    smooth = -lprobs.sum(-1)
    eps_i = epsilon / (logits.shape[-1] - 1)
    return (((1 - epsilon - eps_i) * nll + eps_i * smooth) * keep).sum()


def check_same_model(model, m):
    """The two models name their parameters alike: every name and shape must match moe's."""
    ours = {name: list(p.shape) for name, p in model.named_parameters()}
    theirs = m["parameter_shapes"]
    missing = sorted(set(theirs) - set(ours))
    extra = sorted(set(ours) - set(theirs))
    wrong = sorted(k for k in set(ours) & set(theirs) if ours[k] != theirs[k])
    if missing or extra or wrong:
        sys.exit("reference_trainer: not moe's model: missing %s, extra %s, different shapes %s"
                 % (missing[:5], extra[:5], [(k, ours[k], theirs[k]) for k in wrong[:5]]))
    total = sum(p.numel() for p in model.parameters())
    if total != m["parameters"]:
        sys.exit(f"reference_trainer: {total} parameters, moe has {m['parameters']}")
    return total


def inverse_sqrt(m, update):
    lr, warmup, init = m["lr"], m["warmup"], m["warmup_init_lr"]
    if update < warmup:
        return init + update * (lr - init) / warmup
    return lr * math.sqrt(warmup / update)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="what bench_train_throughput --dump-batches wrote")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (dynamic shapes)")
    ap.add_argument("--json", help="also write the measurements here")
    args = ap.parse_args()
    m = json.load(open(os.path.join(args.dir, "model.json")))
    if m["variant"] not in ("gshard", "dense"):
        sys.exit(f"reference_trainer: variant {m['variant']!r}: the reference has dense and gshard")
    # What the reference implements; anything else would be a different model under the same shapes.
    expected = {"activation": "relu", "top_k": 2, "second_expert_policy": "sampling", "capacity_formula": "gshard",
                "min_capacity": 0, "drop_tokens": True, "jitter": 0.0, "mask_padding": True}
    for key, value in expected.items():
        if m["variant"] == "gshard" or key == "activation":
            if m.get(key) != value:
                sys.exit(f"reference_trainer: {key} = {m.get(key)!r}; the reference implements {value!r}")
    device = torch.device("cuda" if m["device"].startswith("cuda") else "cpu")
    if device.type == "cpu" and m.get("threads", 0) > 0:
        torch.set_num_threads(m["threads"])
    torch.manual_seed(1)
    batches = load_batches(os.path.join(args.dir, "batches.bin"))
    u = m["update_freq"]
    warmup, updates = m["bench_warmup"], m["bench_updates"]
    if len(batches) < (warmup + updates) * u:
        sys.exit("reference_trainer: fewer batches than warm-up + timed updates")
    model = Transformer(m).to(device)
    parameters = check_same_model(model, m)
    model.train()
    forward = torch.compile(model, dynamic=True) if args.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=m["lr"], betas=tuple(m["adam_betas"]), eps=m["adam_eps"],
                                  weight_decay=m["weight_decay"], fused=True)
    bf16 = device.type == "cuda" and m["precision"] == "bf16"
    pin = device.type == "cuda"
    if pin:
        batches = [tuple(t.pin_memory() for t in b) for b in batches]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    losses = torch.zeros((), dtype=torch.float64, device=device)

    def run_update(update):
        micro = batches[update * u:(update + 1) * u]
        targets = [int(b[2].ne(m["padding_idx"]).sum()) for b in micro]  # host batches: no device read
        total = sum(targets)
        for group in optimizer.param_groups:
            group["lr"] = inverse_sqrt(m, update + 1)
        optimizer.zero_grad(set_to_none=True)
        for (src, tin, tout), count in zip(micro, targets):
            src, tin, tout = (t.to(device, non_blocking=True) for t in (src, tin, tout))
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                logits, aux = forward(src, tin)
            share = count / total
            task = label_smoothed_loss(logits, tout, m["label_smoothing"], m["padding_idx"])
            loss = task / total + (m["balance_loss_coef"] * aux * share if aux is not None else 0.0)
            loss.backward()
            losses.add_(task.detach().double())
        if m["clip_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), m["clip_norm"], foreach=True)
        optimizer.step()
        return total

    tokens_timed, start, first_loss = 0, None, None
    for update in range(warmup + updates):
        if update == warmup:
            sync()
            start = time.perf_counter()
        total = run_update(update)
        if update >= warmup:
            tokens_timed += total
        if update == 0:
            first_loss = float(losses) / total
    sync()
    seconds = time.perf_counter() - start
    final = float(losses)
    if not math.isfinite(final):
        sys.exit("reference_trainer: the loss is not finite")
    # One more update under the profiler, after the timing: its ATen operator calls made from outside
    # ATen (forward, backward and optimizer; an op's nested calls not counted), as
    # bench_train_throughput counts moe's.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        run_update(warmup)

    def top_level(event):
        parent = event.cpu_parent
        while parent is not None:
            if parent.name.startswith("aten::"):
                return False
            parent = parent.cpu_parent
        return True

    ops = sum(1 for e in prof.events() if e.name.startswith("aten::") and top_level(e))
    tps = tokens_timed / seconds
    flops = 3.0 * m["forward_flops_per_token"] * tps
    rate = m["moe_train"]["matmul_flops_per_s"]
    name = "pytorch " + ("torch.compile" if args.compile else "eager")
    print("| trainer | device | variant | parameters | timed updates | mean step ms | target tokens/s | MFU | "
          "ATen ops/update |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    print(f"| {name} | {m['device']} | {m['variant']} | {parameters} | {updates} | "
          f"{1e3 * seconds / updates:.1f} | {tps:.0f} | {100 * flops / rate:.2f} % | {ops} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"trainer": name, "target_tokens_per_s": tps, "mean_step_ms": 1e3 * seconds / updates,
                       "mfu": flops / rate, "aten_ops_per_update": ops, "parameters": parameters,
                       "first_loss": first_loss,
                       "torch": torch.__version__}, f, indent=2)


if __name__ == "__main__":
    main()
