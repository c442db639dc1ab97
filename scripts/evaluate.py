"""Run MultiTrust's trust suite (32 tasks, plus utility and over-refusal tracks) on a model or checkpoint.

Examples:
    python scripts/evaluate.py --list-tasks
    python scripts/evaluate.py --model runs/resa/checkpoint-200 --suite mini --output runs/eval/ckpt200
    python scripts/evaluate.py --model llava-hf/llava-1.5-7b-hf --adapter runs/lora/checkpoint-500 \\
        --suite full --data-root /data/multitrust --tasks T1,safety --judge openai:gpt-4o@https://api.openai.com/v1 \\
        --output runs/eval/lora500
    accelerate launch --num_processes 4 scripts/evaluate.py --model ... --output ...   # sharded generation
    vllm serve Qwen/Qwen2.5-VL-7B-Instruct &                                              # a large model, fast:
    python scripts/evaluate.py --model openai:Qwen/Qwen2.5-VL-7B-Instruct@http://127.0.0.1:8000/v1 \\
        --api-concurrency 32 --output runs/eval/qwen7b

The mini suite is generated offline into --cache-dir on first use. Responses are cached by (model fingerprint,
method, task, sample, generation settings; an API model by endpoint, model name and settings): an interrupted
run resumes and a rerun generates nothing. A request to an API model that still fails after its retries is
recorded as failed, left out of the scores and retried by the next run. Ctrl-C (SIGINT) stops after flushing
the cache (exit status 130); a cache entry cut short by a kill is reported and generated again. One run at a
time per --output: a second is refused with the holder's pid and host.
Without --judge, judge-scored checks use documented offline rules, and the results say so per task.
"""

import argparse
import contextlib
import logging
import os
import sys

from eval_bridge.distributed import init_distributed
from eval_bridge.files import OutputDirInUse, output_dir_lock, writable_dir
from eval_bridge.models.adapter import VLM, GenerationSettings
from eval_bridge.report import to_markdown
from eval_bridge.runner import SuiteConfig, run_suite
from eval_bridge.samples import SampleError
from eval_bridge.scoring import Scorers
from eval_bridge.tasks import list_tasks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list-tasks", action="store_true", help="print the 32 tasks and exit")
    p.add_argument(
        "--model",
        help="local model directory or hub id (from the local HF cache), or openai:<model>@<base_url> for a model "
        "served behind an OpenAI-compatible chat endpoint (e.g. vllm serve: http://127.0.0.1:8000/v1)",
    )
    p.add_argument("--adapter", help="PEFT adapter directory on top of --model (e.g. a LoRA checkpoint)")
    p.add_argument("--method", help="inference-time mitigation id (see scripts/train_mitigation.py --list-methods)")
    p.add_argument(
        "--method-arg",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a field of the --method's config (repeatable), e.g. --method-arg alpha=0.5",
    )
    p.add_argument("--suite", choices=["mini", "full"], default="mini", help="mini: offline generated (default)")
    p.add_argument("--data-root", help="MultiTrust data folder (the one holding truthfulness/, safety/, ...)")
    p.add_argument("--tasks", help="task ids and/or aspects, e.g. T1,S4 or safety (default: all; none: tracks only)")
    p.add_argument("--no-tracks", action="store_true", help="skip the utility and over-refusal tracks")
    p.add_argument("--utility-file", help="samples file for the utility track (target = accepted answers)")
    p.add_argument("--over-refusal-file", help="samples file of benign requests for the over-refusal track")
    p.add_argument("--harmful-file", help="samples file of harmful requests: adds the harmful_refusal track")
    p.add_argument(
        "--borderline-file",
        help="samples file of safe requests that look risky (e.g. XSTest's safe prompts): adds the borderline_safe "
        "track (the share refused)",
    )
    p.add_argument("--response-format", choices=["reasoning"], help="score only the answer section (RESA models)")
    p.add_argument("--output", help="folder for results.json, results.md, scores.csv, aspects.png")
    p.add_argument("--cache-dir", default=".cache/trust-suite", help="response/judge cache and mini suite")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-new-tokens", type=int, help="one generation length for all tasks (default: per task)")
    p.add_argument("--limit", type=int, help="at most this many samples per dataset (quick looks)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--judge", help="LLM judge: openai:<model>@<base_url> (key from OPENAI_API_KEY) or hf:<path>")
    p.add_argument("--harmbench-judge", help="jailbreak-success judge, same forms (e.g. hf:<HarmBench-cls path>)")
    p.add_argument(
        "--refusal-classifier",
        help="local HF refusal classifier with longformer-action-ro's six labels (MultiTrust: that model); "
        "default: the offline stand-in trained on PyRIT's human refusal labels (built once, a few CPU minutes); "
        "none: no classifier (its terms are left out)",
    )
    p.add_argument(
        "--toxicity-classifier",
        help="local HF toxicity classifier (in place of Perspective / OpenAI moderation); default: the offline "
        "stand-in trained on PyRIT's human harm scores; none: no classifier (its terms are left out)",
    )
    p.add_argument(
        "--toxicity-labels", nargs="+", default=["toxic"], help="labels of --toxicity-classifier that mean toxic"
    )
    p.add_argument("--trust-remote-code", action="store_true", help="allow code shipped with the checkpoint")
    api = p.add_argument_group("API-served models (--model openai:<model>@<base_url>)")
    api.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        metavar="NAME",
        help="environment variable holding the API key, sent as a Bearer token if set (default: OPENAI_API_KEY)",
    )
    api.add_argument("--api-concurrency", type=int, default=8, metavar="N", help="requests in flight (default: 8)")
    api.add_argument(
        "--api-timeout", type=float, default=120.0, metavar="S", help="per-request timeout in seconds (default: 120)"
    )
    api.add_argument(
        "--api-max-retries",
        type=int,
        default=3,
        metavar="N",
        help="retries on connection errors, timeouts, HTTP 429 and 5xx, with exponential backoff (default: 3)",
    )
    return p


def api_model_error(args) -> str | None:
    """Why the arguments cannot go with an API-served --model (None if they can, or the model is local)."""
    if not args.model.startswith("openai:"):
        return None
    if args.adapter:
        return (
            "--adapter applies to a local model; a served model's weights are the server's. Serve the adapter "
            "(vllm serve <base> --enable-lora --lora-modules NAME=<adapter dir>) and pass --model openai:NAME@<url>"
        )
    if args.method:
        return f"--method {args.method} needs a local model (it owns decoding); drop it for an API-served model"
    return None


def load_model(args):
    """The model to evaluate: an `APIModel` for `openai:<model>@<base_url>`, else a local `VLM`."""
    if not args.model.startswith("openai:"):
        return VLM.load(args.model, args.adapter, trust_remote_code=args.trust_remote_code)
    from eval_bridge.models.api import APIModel

    return APIModel.from_spec(
        args.model,
        api_key_env=args.api_key_env,
        concurrency=args.api_concurrency,
        timeout_s=args.api_timeout,
        max_retries=args.api_max_retries,
    )


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise SystemExit(f"error: --method-arg expects KEY=VALUE, got {item!r}")
    return key.strip(), value


def suite_config(args) -> SuiteConfig:
    """The `SuiteConfig` the arguments describe."""
    return SuiteConfig(
        suite=args.suite,
        data_root=args.data_root,
        tasks=args.tasks,
        tracks=()
        if args.no_tracks
        else ("utility", "over_refusal")
        + (("harmful_refusal",) if args.harmful_file else ())
        + (("borderline_safe",) if args.borderline_file else ()),
        cache_dir=args.cache_dir,
        generation=GenerationSettings(batch_size=args.batch_size, seed=args.seed),
        max_new_tokens=args.max_new_tokens,
        limit=args.limit,
        utility_file=args.utility_file,
        over_refusal_file=args.over_refusal_file,
        harmful_file=args.harmful_file,
        borderline_file=args.borderline_file,
        response_format=args.response_format,
    )


def evaluate(args, method_args: dict[str, str]) -> dict | None:
    """Build the method and scorers, load the model and run the suite (results on the main process, else None).

    The main process holds the output directory's lock throughout: a second run on the same --output is refused
    before it loads anything, and a killed run leaves no stale lock (the kernel drops it with the process).
    """
    main_process = int(os.environ.get("RANK", "0")) == 0  # known before the process group exists
    with output_dir_lock(args.output) if main_process else contextlib.nullcontext():
        writable_dir(args.cache_dir, "--cache-dir")
        method = None
        if args.method:
            from mitigation.registry import build_inference_method

            method = build_inference_method(args.method, **method_args)
        scorers = Scorers.from_specs(
            args.judge, args.harmbench_judge, args.refusal_classifier, args.toxicity_classifier, args.toxicity_labels
        )
        init_distributed()  # before loading, so each process takes its own GPU
        vlm = load_model(args)
        return run_suite(vlm, suite_config(args), method=method, scorers=scorers, output_dir=args.output)


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.list_tasks:
        print(list_tasks())
        return
    if not args.model or not args.output:
        raise SystemExit("error: --model and --output are required (or use --list-tasks)")
    if args.method_arg and not args.method:
        raise SystemExit("error: --method-arg needs --method")
    if error := api_model_error(args):
        raise SystemExit(f"error: {error}")
    method_args = dict(_key_value(item) for item in args.method_arg)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        results = evaluate(args, method_args)
    except (SampleError, OSError, ValueError, OutputDirInUse) as err:
        raise SystemExit(f"error: {err}") from None
    except KeyboardInterrupt:
        # Every finished batch is already flushed to the cache; only the batch in flight is lost.
        print(
            f"\ninterrupted: the responses generated so far are cached in {args.cache_dir}; "
            "run the same command again to resume",
            file=sys.stderr,
        )
        raise SystemExit(130) from None
    if results is not None:
        print(to_markdown(results))
        failed = results["provenance"]["responses"]["failed"]
        if failed:
            print(f"{failed} generation(s) failed (left out of the scores; rerun to retry them)")
        print(f"results written to {args.output}/results.json")


if __name__ == "__main__":
    main()
