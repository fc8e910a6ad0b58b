"""The results layer: every evaluation run recorded, compared, gated and published, each score with the
documents it rests on.

One job per module: `record` (the run record schema and its diffable file format), `environment`
(versions and hardware), `variants` (what a run evaluated and its name; the baseline rules), `ingest`
(lmms-eval / lm-eval outputs to portable records), `files` (atomic writes), `store` (the committed and
local stores and the sqlite index built from them), `protocols` (scores under a scoring protocol),
`selection` (what a run reference names), `stats` (scores, paired bootstrap, McNemar), `summary` (one
run's scores with n and intervals, per task and split), `compare`, `regress`, `leaderboard` (and its
text renderings), `render_html`, `plot`, `submit`. Records are read as data: nothing here imports the
merge engine (only its error base class and its portable path naming, merge_models.portable).
"""
