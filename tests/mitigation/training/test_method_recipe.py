"""The run every trained method shares: the same held-out requests as RESA, the tracks on every checkpoint."""

import dataclasses

from mitigation.training.config import TrainingConfig
from mitigation.training.method_recipe import (
    SAFETY_WEIGHTS,
    SHARED_SIZES,
    TRACKS,
    report_weights,
    shared_sources,
    track_suite,
)
from resa.config import ResaConfig


def test_methods_share_resa_default_sizes_so_their_tables_compare():
    """RESA's CPU recipe and every method build the sources at the same sizes: the same held-out requests."""
    resa = ResaConfig()
    assert (
        dict(
            n_harmful_train=resa.n_harmful_train,
            n_harmful_eval=resa.n_harmful_eval,
            n_benign_train=resa.n_benign_train,
            n_benign_eval=resa.n_benign_eval,
            vqa_share=resa.benign_vqa_share,
        )
        == SHARED_SIZES
    )


def test_shared_sources_hold_out_the_same_requests_whatever_the_cache(tmp_path):
    a = shared_sources(TrainingConfig(cache_dir=str(tmp_path / "a")))
    b = shared_sources(TrainingConfig(cache_dir=str(tmp_path / "b")))
    assert [r.prompt for r in a.eval] == [r.prompt for r in b.eval]
    held_out = {r.prompt for r in a.eval if r.harmful and r.presentation == "text"}
    assert len(held_out) == SHARED_SIZES["n_harmful_eval"]
    assert not held_out & {r.prompt for r in a.train}, "a held-out harmful request is in the training records"


def test_track_suite_runs_the_three_tracks_on_the_given_files_plus_the_tasks():
    cfg = TrainingConfig(eval_tasks="T1", eval_batch_size=8, cache_dir="/c")
    spec = track_suite(cfg, {"harmful": "/h.jsonl", "benign": "/b.jsonl"}, response_format="reasoning")
    assert spec.tracks == TRACKS and spec.tasks == "T1" and spec.batch_size == 8
    assert (spec.harmful_file, spec.over_refusal_file) == ("/h.jsonl", "/b.jsonl")
    assert spec.cache_dir == "/c/suite" and spec.response_format == "reasoning"


def test_best_checkpoint_weights_need_the_overall_only_when_tasks_are_evaluated():
    assert report_weights(TrainingConfig(eval_tasks="none")) == SAFETY_WEIGHTS
    assert report_weights(dataclasses.replace(TrainingConfig(), eval_tasks="all")) is None
