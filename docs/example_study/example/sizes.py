"""EX side job: count the dataset's examples (``python -m normlab.studies.example.sizes``)."""

import argparse
from pathlib import Path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    from ... import data
    from ...io import write_json

    d = data.load(a.data)
    write_json({"n_train": len(d.x_train), "n_test": len(d.x_test)}, a.out)


if __name__ == "__main__":
    main()
