"""The device keys of the schema: precision auto, num_workers auto or a count, compile and benchmark."""

from __future__ import annotations

import pytest

from transfer.app.compose import compose
from transfer.errors import UserError


def test_auto_values_and_the_new_trainer_keys_validate():
    cfg = compose(
        [
            "~recipe",
            "trainer.precision=auto",
            "data.num_workers=auto",
            "trainer.compile=true",
            "trainer.benchmark=false",
        ]
    )
    assert (cfg.data.num_workers, cfg.trainer.compile, cfg.trainer.benchmark) == ("auto", True, False)
    assert compose(["~recipe", "data.num_workers=3"]).data.num_workers == 3


@pytest.mark.parametrize("bad", ["-1", "many", "1.5"])
def test_a_bad_worker_count_names_the_key_and_the_choices(bad):
    with pytest.raises(UserError, match=r"data.num_workers=.*: give a whole number >= 0, or auto\."):
        compose(["~recipe", f"data.num_workers={bad}"])
