"""`tickwatch stack init` runs the same training steps as the demo, each a real subcommand."""

from __future__ import annotations

from ops.stack.bootstrap import TRAINING_STEPS


def test_training_steps_are_real_subcommands(tickwatch_subcommand) -> None:
    # Fails while the producers/features/models engineers have not yet added these subcommands.
    assert [step[0] for step in TRAINING_STEPS] == ["backfill", "features", "train"]
    for step in TRAINING_STEPS:
        tickwatch_subcommand(list(step))
