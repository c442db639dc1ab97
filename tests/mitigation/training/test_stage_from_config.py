"""Stage.from_config: a recipe's prefixed config fields become its stage's hyperparameters."""

from types import SimpleNamespace

from mitigation.training.pipeline import Stage

ROWS = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}]


def test_prefixed_fields_become_the_stages_and_explicit_fields_win():
    cfg = SimpleNamespace(
        sft_learning_rate=3e-4, sft_epochs=2, sft_max_steps=40, sft_batch_size=6, sft_grad_accum=3, sft_save_steps=20
    )
    stage = Stage.from_config("sft", "sft", ROWS, cfg, "sft_", save_steps=0, args={"assistant_only_loss": True})
    assert (stage.learning_rate, stage.epochs, stage.max_steps, stage.batch_size, stage.grad_accum) == (
        3e-4,
        2,
        40,
        6,
        3,
    )
    assert stage.save_steps == 0 and stage.args == {"assistant_only_loss": True}


def test_a_field_the_config_lacks_keeps_the_stages_default():
    stage = Stage.from_config("mdpo", "dpo", ROWS, SimpleNamespace(learning_rate=1e-4, batch_size=4))
    assert (stage.learning_rate, stage.batch_size, stage.max_steps, stage.grad_accum, stage.save_steps) == (
        1e-4,
        4,
        -1,
        1,
        0,
    )


def test_resas_and_safety_dpos_stages_read_their_own_prefixes():
    from mitigation.training.safety_dpo import SafetyDpoConfig, dpo_stage
    from resa import stages
    from resa.config import ResaConfig

    cfg = ResaConfig(sft_learning_rate=1e-3, sft_max_steps=7, dpo_learning_rate=2e-6, dpo_batch_size=3)
    sft, dpo = stages.sft_stage(cfg, ROWS), stages.dpo_stage(cfg, ROWS)
    assert (sft.learning_rate, sft.max_steps, sft.batch_size) == (1e-3, 7, cfg.sft_batch_size)
    assert (dpo.learning_rate, dpo.batch_size, dpo.args["beta"]) == (2e-6, 3, cfg.dpo_beta)
    sd = dpo_stage(SafetyDpoConfig(dpo_save_steps=5, dpo_grad_accum=2), ROWS)
    assert (sd.save_steps, sd.grad_accum, sd.learning_rate) == (5, 2, SafetyDpoConfig().dpo_learning_rate)


def test_the_run_wide_cap_never_makes_a_stage_train_longer_than_its_epochs():
    """max_steps > 0 overrides the epochs in transformers' Trainer: a cap above the epochs' count is left out."""
    from mitigation.training.config import TrainingConfig
    from mitigation.training.pipeline import stage_max_steps

    rows = ROWS * 16
    epochs_decide = Stage("dpo", "dpo", rows, learning_rate=1e-4, batch_size=4)  # 16 rows / 4 = 4 steps
    assert stage_max_steps(TrainingConfig(max_steps=60), epochs_decide) == -1  # 4 <= 60: the epochs decide
    assert stage_max_steps(TrainingConfig(max_steps=2), epochs_decide) == 2  # the cap binds
    assert stage_max_steps(TrainingConfig(max_steps=4), epochs_decide) == -1
    assert stage_max_steps(TrainingConfig(max_steps=3), epochs_decide, world=2) == -1  # 8 rows a process: 2 steps
    two_epochs = Stage("dpo", "dpo", rows, learning_rate=1e-4, batch_size=3, grad_accum=2, epochs=2)  # 3 x 2
    assert stage_max_steps(TrainingConfig(max_steps=5), two_epochs) == 5
    assert stage_max_steps(TrainingConfig(max_steps=6), two_epochs) == -1
    fixed = Stage("sft", "sft", rows, learning_rate=1e-4, max_steps=40)
    assert stage_max_steps(TrainingConfig(max_steps=60), fixed) == 40
    assert stage_max_steps(TrainingConfig(max_steps=10), fixed) == 10
    assert stage_max_steps(TrainingConfig(), fixed) == 40 and stage_max_steps(TrainingConfig(), epochs_decide) == -1
