"""The results layer: every evaluation run recorded under `results/`, compared, gated and published.

One job per module: `record` (the run record schema and its diffable file format), `environment`
(versions and hardware), `variants` (what a run evaluated; the baseline rules), `ingest` (lmms-eval /
lm-eval outputs to records), `files` (atomic writes), `store` (record files and the sqlite index built
from them), `selection` (what a run reference names), `stats` (scores, paired bootstrap, McNemar),
`compare`, `regress`, `leaderboard` (and its text renderings), `render_html`, `plot`, `submit`.
Records are read as data: nothing here imports the merge engine (only its error base class).
"""
