"""ukg-extract's benchmark suite: ``python -m benchmarks`` (``make bench``, ``make bench-quick``).

Not tests: nothing here gates CI. Each scenario starts the simulator as a separate process on
loopback (one per scenario, one per run under churn), runs every contender against it as
another process (ukg-extract, a naive requests
script, a fixed-concurrency aiohttp script, dlt's rest_api source and a bare aiohttp ceiling),
and reports wall time, profiles/s as ratios to the ceiling and to the hidden limit, 429s,
retries, exactness against the simulator's ground truth and peak memory, in
``benchmarks/results/``. Layout:

* ``_scenarios``: the named presets; ``contenders/``: the contender scripts and their registry;
* ``_simulator``, ``_process``: the simulator and contender child processes, CPU and memory;
* ``_metrics``, ``_compare``: what the simulator saw, and the output against the ground truth;
* ``_suite``: the runs, repeats, caps and estimates; ``_verdict``: who leads where, and why;
* ``_report``, ``_results_json``, ``_chart``: the markdown, the raw JSON and the PNG.
"""
