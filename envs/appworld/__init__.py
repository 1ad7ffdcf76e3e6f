"""AppWorld: the env, its server pool, the data reader, the TGC/SGC helper and the
synthetic-world builder. Nothing here imports AppWorld: it runs in its own venv."""
