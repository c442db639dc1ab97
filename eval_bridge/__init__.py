"""The trust suite and the bridge from any checkpoint to its trust scores.

The bottom layer of the toolkit: it knows nothing about training. `eval_bridge.models` loads and runs VLMs,
`eval_bridge.samples` defines the sample record every dataset is read into.
"""

__version__ = "0.1.0"
