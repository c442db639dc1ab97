"""Where a suite's samples come from: the offline mini suite, or the real MultiTrust data under a data root.

Both give the same samples shape for the same dataset id, so the same scorer chains run on either. The utility
and over-refusal tracks come from the mini suite unless the user gives files for them.
"""

from __future__ import annotations

from pathlib import Path

from eval_bridge.cache import sample_hash, stable_hash
from eval_bridge.samples import Sample, load_samples

ASPECT_FOLDERS = ("truthfulness", "safety", "robustness", "fairness", "privacy")


class DataSource:
    """Samples for dataset ids and tracks; `describe()` says where they came from, for provenance."""

    name = "base"

    def __init__(
        self,
        cache_dir: str | Path,
        utility_file: str | None = None,
        over_refusal_file: str | None = None,
        harmful_file: str | None = None,
        borderline_file: str | None = None,
    ):
        self.cache_dir = Path(cache_dir)
        self.track_files = {
            "utility": utility_file,
            "over_refusal": over_refusal_file,
            "harmful_refusal": harmful_file,
            "borderline_safe": borderline_file,
        }

    def load(self, dataset_id: str) -> list[Sample]:
        raise NotImplementedError

    def track(self, track: str) -> list[Sample]:
        """The samples of a track: the user's file if given, else the mini suite's."""
        path = self.track_files.get(track)
        if path:
            if track == "utility":
                from eval_bridge.data.vqa import load_vqa

                return load_vqa(path)
            return load_samples(path)
        if track == "harmful_refusal":
            raise ValueError("the harmful_refusal track needs a file of harmful requests (--harmful-file)")
        if track == "borderline_safe":
            raise ValueError(
                "the borderline_safe track needs a file of safe requests that look risky (--borderline-file)"
            )
        from eval_bridge.data.mini import load_mini_track

        return load_mini_track(track, self.cache_dir)

    def describe(self) -> dict:
        return {"suite": self.name, **{f"{k}_file": v for k, v in self.track_files.items() if v}}


class MiniSuite(DataSource):
    """The generated offline mini suite (built into `cache_dir` on first use)."""

    name = "mini"

    def load(self, dataset_id: str) -> list[Sample]:
        from eval_bridge.data.mini import load_mini_dataset

        return load_mini_dataset(dataset_id, self.cache_dir)


class MultiTrustData(DataSource):
    """The real MultiTrust release under `data_root` (the folder MultiTrust calls `data/`)."""

    name = "full"

    def __init__(self, data_root: str | Path, cache_dir: str | Path, **tracks):
        super().__init__(cache_dir, **tracks)
        self.data_root = Path(data_root)
        if not self.data_root.is_dir():
            raise FileNotFoundError(
                f"--data-root {self.data_root} is not a folder; point it at the MultiTrust data folder "
                "(the one holding truthfulness/, safety/, robustness/, fairness/, privacy/)"
            )
        if not any((self.data_root / aspect).is_dir() for aspect in ASPECT_FOLDERS):
            raise FileNotFoundError(
                f"--data-root {self.data_root} holds none of {', '.join(f + '/' for f in ASPECT_FOLDERS)}: point it "
                "at the MultiTrust release's data/ folder (an empty or unextracted download?)"
            )

    def load(self, dataset_id: str) -> list[Sample]:
        from eval_bridge.data.multitrust import load_multitrust_dataset

        return load_multitrust_dataset(dataset_id, self.data_root)

    def describe(self) -> dict:
        return {**super().describe(), "data_root": str(self.data_root.resolve())}


def make_source(suite: str, cache_dir: str | Path, data_root: str | None = None, **tracks) -> DataSource:
    """`suite` "mini" (offline default) or "full" (needs `data_root`)."""
    if suite == "mini":
        if data_root:
            raise ValueError("--data-root is for --suite full; the mini suite is generated into the cache")
        return MiniSuite(cache_dir, **tracks)
    if suite == "full":
        if not data_root:
            raise ValueError("--suite full reads the real MultiTrust data: pass --data-root DIR")
        return MultiTrustData(data_root, cache_dir, **tracks)
    raise ValueError(f"unknown suite {suite!r}; choose 'mini' or 'full'")


def data_hash(samples: list[Sample], digests: list[str] | None = None) -> str:
    """A hash of a dataset's content (ids and sample hashes), recorded in results for provenance."""
    digests = digests or [sample_hash(s) for s in samples]
    return stable_hash([[s.id, d] for s, d in zip(samples, digests, strict=True)])
