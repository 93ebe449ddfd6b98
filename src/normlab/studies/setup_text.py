"""Plain-words descriptions of a study's setup (dataset, model, units), for claim texts and figure titles.

Torch-free. The studies' texts were written for the default setup (MNIST-1D, MLPs and a 1-D CNN); for any
other dataset or architecture (config/fashion.yaml: Fashion-MNIST and conv nets, config/paper.yaml:
CIFAR-10) they describe what was actually run with these helpers, so that every departure from the
paper's setup stays in the claim text. ``is_default_setup`` tells a study when to keep its original wording.
"""

from __future__ import annotations

DATASETS = {"mnist1d": "MNIST-1D", "fashion_mnist": "Fashion-MNIST (28x28 grey images)",
            "cifar10": "CIFAR-10 (32x32 colour images)"}
IMAGE_DATASETS = ("fashion_mnist", "cifar10")
CONV_ARCHS = ("vgg", "preresnet", "cnn1d")


def dataset_text(name: str | None) -> str:
    return DATASETS.get(name or "mnist1d", str(name))


def is_default_setup(cfg: dict) -> bool:
    """True for the default dataset (MNIST-1D), whose texts the studies state in their own words."""
    return cfg.get("dataset", "mnist1d") == "mnist1d"


def _channels(spec: dict, default: list[int]) -> list[int]:
    return list(spec.get("channels") or default)


def model_text(spec: dict, dataset: str | None = None, short: bool = False) -> str:
    """e.g. 'VGG-style CNN of 6 3x3 conv layers (channels 8-8-16-16-32-32, max-pool after every 2nd, ...)';
    ``short`` (figure titles): 'VGG-6 CNN (8-8-16-16-32-32 channels)'."""
    arch = spec.get("arch", "mlp")
    flat = " on flattened images" if dataset in IMAGE_DATASETS else ""
    if arch == "vgg":
        ch = _channels(spec, [64, 64, 128, 128, 256, 256, 512, 512, 512, 512])
        if short:
            return f"VGG-{len(ch)} CNN ({'-'.join(map(str, ch))} channels)"
        return (f"VGG-style CNN of {len(ch)} 3x3 conv layers (channels {'-'.join(map(str, ch))}, max-pool after "
                f"every 2nd, global average pool, linear read-out)")
    if arch == "preresnet":
        ch = _channels(spec, [16, 32, 64])
        return f"PreResNet{spec.get('depth', 32)} (pre-activation ResNet, channels {'-'.join(map(str, ch))})"
    if arch == "cnn1d":
        ch = _channels(spec, [32, 32, 64, 64])
        return f"1-D CNN of {len(ch)} conv layers (channels {'-'.join(map(str, ch))})"
    if arch == "shifted_mlp":
        return f"shifted MLP {spec.get('depth')} hidden x {spec.get('width')}{flat}"
    return f"MLP {spec.get('depth')} x {spec.get('width')}{flat}"


def n_conv_layers(spec: dict) -> int | None:
    """Conv layers of a VGG / 1-D CNN spec (None for other architectures)."""
    arch = spec.get("arch", "mlp")
    if arch == "vgg":
        return len(_channels(spec, [0] * 10))
    if arch == "cnn1d":
        return len(_channels(spec, [0] * 4))
    return None


def unit_word(spec: dict) -> str:
    """What a 'unit' of the per-unit probes is: a hidden unit of an MLP, a channel of a conv net (its filter)."""
    return "channels (a conv filter's incoming weights)" if spec.get("arch", "mlp") in CONV_ARCHS else "units"


def headlines_for(headlines: dict, cfg: dict, setup: str) -> dict:
    """A study's ``HEADLINES`` for the setup ``cfg`` describes: as declared (the default setup's departures)
    on the default dataset, else with each claim's departures replaced by ``setup`` (what was run); the
    claim texts in claims.csv state the measurement and thresholds in full."""
    if is_default_setup(cfg):
        return headlines
    return {cid: {**h, "departures": f"{setup}; the measurement, thresholds and pooling as the claim text states"}
            for cid, h in headlines.items()}


def title_note(text: str, width: int = 120) -> str:
    """A figure title's extra line(s): ``text`` wrapped at ``width`` characters, after a newline ('' for '')."""
    import textwrap

    return "\n" + textwrap.fill(text, width) if text else ""


def title_y(fig, y: float, note: str) -> float:
    """The ``y`` of a suptitle that sits above the axes (va top) raised by the lines ``note`` adds (0.2 in each)."""
    return y + 0.2 * note.count("\n") / fig.get_figheight()


def number(n: int) -> str:
    """1500 -> '1,500'."""
    return f"{int(n):,}"
