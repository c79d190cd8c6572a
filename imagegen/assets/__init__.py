"""Package data: the bundled default model, `default/` (a Shapes base 32 px diffusion stage in
float16 with its config and content hashes), written by `python -m imagegen.bundle export` and
used by `imagegen.generate` / `load_pipeline` when no model is given (or model="default").
No code lives here; `imagegen.utils.runs.BUNDLED_MODEL_DIR` points at the folder."""
