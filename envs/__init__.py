"""Tool-use benchmarks as Gymnasium envs.

Registration names an entry point by string, so ``import envs`` loads neither tau2 nor
AppWorld; ``gymnasium.make("toolgym/tau3-airline-v0")`` imports the engine on first use.
"""

import gymnasium

ENV_IDS = {
    "tau3_airline": "toolgym/tau3-airline-v0",
}

gymnasium.register(ENV_IDS["tau3_airline"], entry_point="envs.tau3_airline.env:Tau3AirlineEnv")
