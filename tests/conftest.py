import os

# Tests never reach the internet: litellm's price table stays local (shared/FACTS.md).
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
