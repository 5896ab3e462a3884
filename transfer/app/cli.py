"""`python -m transfer`: compose the Hydra config, run the command, print user errors as one line (exit 2).

Kept free of heavy imports so that mistakes are reported in well under the 5 seconds torch + timm take to load.
"""

from __future__ import annotations

import os
import re
import sys

import hydra
from omegaconf import DictConfig

from transfer.app.config_source import conf_dir, register_recipe_source
from transfer.errors import UserError


def _task(cfg: DictConfig) -> None:
    from transfer.app.dispatch import dispatch

    try:
        dispatch(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def expand_home(argv: list[str]) -> list[str]:
    """`data.root=~/cats` -> the home path: Hydra's override grammar cannot lex an unquoted `~`, and not every
    shell expands a tilde after `=` in an argument."""
    return [re.sub(r"^([\w.+]+)=~(?=/|$)", lambda m: f"{m.group(1)}={os.path.expanduser('~')}", a) for a in argv]


def main() -> None:
    sys.argv = [sys.argv[0], *expand_home(sys.argv[1:])]
    register_recipe_source()
    hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(_task)()


if __name__ == "__main__":
    main()
