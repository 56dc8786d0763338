"""Speed benchmarks: `python -m bench.speed` (every model on this machine), `python -m bench.versus`
(against pytorch-generative), `python -m bench.masks` (MADE's mask switching); what they share (the
timer, random images, one training step as the loop runs it) is in bench/common.py."""
