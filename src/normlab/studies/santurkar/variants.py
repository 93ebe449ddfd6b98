"""S1 variants: the training grid, its cross-key checks, and the settings each net trains with.

Torch-, numpy- and pandas-free (the Snakefile imports the study at parse time)."""

from __future__ import annotations

NORM_LABEL = {"none": "standard", "bn_pre": "BN", "noisy_bn": "noisy BN", "noise_only": "standard + noise"}
DEFAULT_CHANNELS = {"cnn1d": 4, "vgg": 10}  # conv layers of normlab.models.cnn's defaults


def among(lr: float, lrs) -> bool:
    """``lr`` is one of ``lrs`` (numpy.isclose's default tolerance)."""
    return any(abs(lr - x) <= 1e-8 + 1e-5 * abs(x) for x in lrs)


def check_config(cfg: dict) -> list[str]:
    """Cross-key checks (names relative to the study's section): keys that contradict each other, or a config
    where no S1 claim could run. Rates or norms a claim needs and the config does not train are no error:
    that claim is a ``not run`` row naming what it needs."""
    out = []
    missing = [n for n in cfg["nets"] if n not in cfg["models"]]
    if missing:
        out.append(f"'nets' {missing} must be keys of 'models' {sorted(cfg['models'])}")
    for net in [n for n in cfg["nets"] if n in cfg["models"]]:
        out += _net_checks(cfg, net)
    d = cfg["dln"]
    bad = [i for i in d["ics_layers"] if not -d["depth"] <= i < d["depth"]]
    if bad:
        out.append(f"'dln.ics_layers' {bad} must be layer indices within 'dln.depth' {d['depth']}")
    if d["probe_every"] > d["steps"]:
        out.append(f"'dln.probe_every' {d['probe_every']} must be at most 'dln.steps' {d['steps']}")
    if not missing:
        needs = claim_needs(cfg)
        if all(needs.values()):
            out.append("no S1 claim could run: " + "; ".join(f"{cid} needs {n}" for cid, n in needs.items()))
    return out


def _net_checks(cfg: dict, net: str) -> list[str]:
    """The checks of one net against the probes' layers and the loop's step counts."""
    out = []
    depth = n_weight_layers(cfg["models"][net]["model"])
    bad = [i for i in cfg["probes"]["ics_layers"] if depth is not None and not -depth <= i < depth]
    if bad:
        out.append(f"'probes.ics_layers' {bad} must be weight-layer indices of 'models.{net}' "
                   f"({depth} weight layers: -{depth}..{depth - 1})")
    steps = cfg["models"][net].get("steps", cfg["train"]["steps"])
    if cfg["train"]["eval_every"] > steps:
        out.append(f"'train.eval_every' {cfg['train']['eval_every']} must be at most the steps of "
                   f"'models.{net}' ({steps})")
    if cfg["probes"]["every"] > steps:
        out.append(f"'probes.every' {cfg['probes']['every']} must be at most the steps of 'models.{net}' ({steps})")
    return out


def n_weight_layers(model: dict) -> int | None:
    """Weight layers (Linear / Conv) of a model entry, torch-free: an MLP's depth hidden layers + the output;
    a CNN's convolutions (``channels``) + the output layer; None for other architectures (not checked)."""
    arch = model.get("arch", "mlp")
    if arch == "mlp":
        return int(model.get("depth", 1)) + 1
    if arch in DEFAULT_CHANNELS:
        return len(model.get("channels") or [0] * DEFAULT_CHANNELS[arch]) + 1
    return None


def net_entry(cfg: dict, net: str) -> dict:
    if net not in cfg["models"]:
        raise ValueError(f"studies.santurkar.nets: {net!r} is not a key of studies.santurkar.models "
                         f"(known: {', '.join(cfg['models'])})")
    return cfg["models"][net]


def net_train(cfg: dict, net: str) -> dict:
    """The training loop settings of one net: ``train`` with the net's own ``steps`` if it has one."""
    entry = net_entry(cfg, net)
    return {**cfg["train"], **({"steps": entry["steps"]} if "steps" in entry else {})}


def hist_steps(cfg: dict, net: str) -> list[int]:
    steps = net_train(cfg, net)["steps"]
    return sorted({min(int(round(f * steps)), steps - 1) for f in cfg["probes"]["histogram"]["at"]})


def setup_text(cfg: dict, joiner: str = ", ") -> str:
    """Dataset, nets and optimizer as the claim texts name them: the default's wording on MNIST-1D,
    else what was run (dataset, each net, steps, seeds)."""
    from ..setup_text import dataset_text, is_default_setup, model_text

    if is_default_setup(cfg):
        return joiner.join(["MNIST-1D", "MLP", "plain SGD"]) if joiner == ", " else "MNIST-1D MLP, plain SGD"
    nets = "; ".join(f"{model_text(net_entry(cfg, n)['model'], cfg['dataset'])}, {net_train(cfg, n)['steps']:,} steps"
                     for n in cfg["nets"])
    return (f"{dataset_text(cfg['dataset'])} instead of CIFAR-10; {nets} (the paper: VGG, 15,000 steps); plain SGD, "
            f"batch {cfg['train']['batch_size']}, {cfg['seeds']} seeds")


def _probes(cfg: dict, net: str, norm: str) -> list[dict]:
    """The probes of one variant: the activation histograms and the noise-free evaluation at the last step
    (every variant); ICS and landscape (norms in ``probes.norms``)."""
    p, h = cfg["probes"], cfg["probes"]["histogram"]
    steps = net_train(cfg, net)["steps"]
    # unit_activations first: it imports normlab.probes.ics, which also registers bn_clean_eval
    probes = [{"name": "unit_activations", "every": 1, "at": hist_steps(cfg, net), "layer": h["layer"],
               "unit": h["unit"], "max_values": h["max_values"]},
              {"name": "bn_clean_eval", "every": 1, "at": [steps - 1], "batch_size": cfg["train"]["batch_size"]}]
    if norm in p["norms"]:
        probes += [{"name": "ics", "every": p["every"], "layers": p["ics_layers"]},
                   {"name": "landscape", "every": p["every"], **p["landscape"]}]
    return probes


def grid(cfg: dict) -> list[tuple[str, str, float]]:
    """The (net, norm, lr) of every variant: every norm at every rate of ``lrs``, and the norms of
    ``probes.norms`` also at the rates of ``probes.lrs`` (S1.c's and S1.d's measures at more rates without the
    whole sweep; a rate already in ``lrs`` adds nothing)."""
    out = []
    for net in cfg["nets"]:
        for norm in cfg["norms"]:
            extra = [lr for lr in cfg["probes"]["lrs"] if norm in cfg["probes"]["norms"] and not among(lr, cfg["lrs"])]
            out += [(net, norm, lr) for lr in [*cfg["lrs"], *extra]]
    return out


def trained_lrs(cfg: dict, norm: str, probed: bool = False) -> list[float]:
    """The rates ``norm`` is trained at (with the ics and landscape probes, when ``probed``), over every net."""
    return sorted({lr for _, n, lr in grid(cfg) if n == norm and (not probed or n in cfg["probes"]["norms"])})


def _rates(rates) -> str:
    return ", ".join(f"{x:g}" for x in rates)


def _norms_needs(cfg: dict, norms, probed: bool = False) -> str | None:
    """What a claim comparing ``norms`` lacks (None when the config trains them all, with the probes when
    ``probed``)."""
    have = [n for n in cfg["norms"] if not probed or n in cfg["probes"]["norms"]]
    if all(n in have for n in norms):
        return None
    where = "'norms' and 'probes.norms'" if probed else "'norms'"
    return f"norms {' and '.join(norms)} in {where} (the config has {', '.join(have) or 'none of them'})"


def claim_rates(cfg: dict, key: str, norms, probed: bool = False) -> tuple[list[float], list[float]]:
    """(rates of ``claims.<key>`` every norm of ``norms`` is trained at, those it is not); an empty
    ``claims.<key>`` means every rate they share."""
    shared = sorted(set.intersection(*(set(trained_lrs(cfg, n, probed)) for n in norms)))
    wanted = cfg["claims"][key] or shared
    return [lr for lr in wanted if among(lr, shared)], [lr for lr in wanted if not among(lr, shared)]


def claim_needs(cfg: dict) -> dict:
    """{claim id: what the config lacks for it (None: it can run)} for S1.a-S1.d."""
    specs = {"S1.a": (("none", "bn_pre", "noisy_bn"), "regime_lrs", False),
             "S1.b": (("noise_only",), "measure_lrs", False),
             "S1.c": (("none", "bn_pre"), "ics_lrs", True),
             "S1.d": (("none", "bn_pre"), "measure_lrs", True)}
    out = {}
    for cid, (norms, key, probed) in specs.items():
        out[cid] = _norms_needs(cfg, norms, probed)
        if out[cid] is None and not claim_rates(cfg, key, norms, probed)[0]:
            where = "'lrs' or 'probes.lrs'" if probed else "'lrs'"
            out[cid] = (f"a rate of 'claims.{key}' [{_rates(cfg['claims'][key])}] trained for {' and '.join(norms)} "
                        f"(add it to {where}; trained: [{_rates(trained_lrs(cfg, norms[0], probed))}])")
    if out["S1.d"] is None and not any(early_steps(cfg, net) for net in cfg["nets"]):
        out["S1.d"] = (f"a probe step after step 0 within the first {cfg['claims']['early']:g} of training "
                       f"('probes.every' {cfg['probes']['every']} is beyond 'claims.early' x the steps)")
    return out


def early_steps(cfg: dict, net: str) -> list[int]:
    """The probe steps of S1.d's early window: after step 0 (the initialization, before any update shapes the
    landscape), up to ``claims.early`` of the net's steps."""
    steps = net_train(cfg, net)["steps"]
    every, limit = cfg["probes"]["every"], min(cfg["claims"]["early"] * steps, steps - 1)
    return list(range(every, int(limit) + 1, every))


def variants(cfg: dict) -> dict:
    out = {}
    for net, norm, lr in grid(cfg):
        out[f"{net}-{norm}-lr{lr:g}"] = {
            "keys": {"net": net, "norm": norm, "lr": lr},
            "model": {**net_entry(cfg, net)["model"], "act": cfg["act"], "norm": norm, "noise": cfg["noise"]},
            "optimizer": cfg["optimizer"],
            "lr": lr,
            "schedule": {"name": "constant"},
            "train": net_train(cfg, net),
            "probes": _probes(cfg, net, norm),
        }
    return out


# The headline claims' variants: (norms compared, the ``claims`` key of their rates, read with the ICS/landscape
# probes). S1.b is a check (our control), not a headline.
HEADLINE_SPECS = {"S1.a": (("none", "bn_pre", "noisy_bn"), "regime_lrs", False),
                  "S1.c": (("none", "bn_pre"), "ics_lrs", True),
                  "S1.d": (("none", "bn_pre"), "measure_lrs", True)}


def claim_variants(cfg: dict) -> dict[str, list[str]]:
    """{headline claim id: the variants (keys of ``variants(cfg)``) whose runs its estimate reads}, over every net:
    S1.a none, bn_pre and noisy_bn at the rates of ``claims.regime_lrs`` (all four metric strata read the same
    runs); S1.c none and bn_pre at ``claims.ics_lrs`` (the ICS probe); S1.d none and bn_pre at
    ``claims.measure_lrs`` (the landscape probe). A claim the config cannot run (``claim_needs``) reads none. The
    DLN (S1.c's and S1.d's DLN rows) is a side job, cells only."""
    needs = claim_needs(cfg)
    vs = variants(cfg)
    out = {}
    for cid, (norms, key, probed) in HEADLINE_SPECS.items():
        rates = claim_rates(cfg, key, norms, probed)[0] if needs[cid] is None else []
        out[cid] = [name for name, v in vs.items()
                    if v["keys"]["norm"] in norms and rates and among(v["keys"]["lr"], rates)]
    return out
