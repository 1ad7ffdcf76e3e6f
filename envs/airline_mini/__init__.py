"""airline-mini, the small tau2 domain (see tasks.py).

Its modules import tau2 at the top; importing the engine module here, before any of them
loads, neutralises tau2's import side effects first (see envs/tau2_engine.py).
"""

import envs.tau2_engine  # noqa: F401
