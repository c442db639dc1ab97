"""Build tiny random VLMs (LLaVA, LLaVA-NeXT, Qwen2-VL, Idefics3) offline and save them under OUT_DIR/<family>.

Example:
    python scripts/make_tiny_models.py /tmp/tiny --families llava qwen2_vl
"""

import argparse

from eval_bridge.models.tiny import FAMILIES, save_all_tiny_vlms


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", help="folder to write one model directory per family into")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES, help="which families")
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and tokenizer (default 0)")
    args = parser.parse_args(argv)
    for family, path in save_all_tiny_vlms(args.out_dir, args.families, args.seed).items():
        print(f"{family:12s} {path}")


if __name__ == "__main__":
    main()
