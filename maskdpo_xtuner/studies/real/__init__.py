"""The real run: SmolLM2-135M-Instruct served by vLLM on real countries (GeoNames), labelled by
an exact judge (countries.py), trained with the paper's config (run.py), reported (report.py)."""
