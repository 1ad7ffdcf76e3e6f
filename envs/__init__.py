"""Tool-use benchmarks as Gymnasium envs.

Registration names an entry point by string, so ``import envs`` loads neither tau2 nor
AppWorld; ``gymnasium.make("toolgym/tau3-airline-v0")`` imports the engine on first use.
"""

import gymnasium

ENV_IDS = {
    "tau3_airline": "toolgym/tau3-airline-v0",
    # the small domain (4 tools, short policy, generated tasks) for CPU-scale learning
    "airline_mini": "toolgym/airline-mini-v0",
    "appworld": "toolgym/appworld-v0",
    "tau2_retail": "toolgym/tau2-retail-v0",
}

gymnasium.register(ENV_IDS["tau3_airline"], entry_point="envs.tau3_airline.env:Tau3AirlineEnv")
gymnasium.register(ENV_IDS["airline_mini"], entry_point="envs.airline_mini.env:AirlineMiniEnv")
gymnasium.register(ENV_IDS["appworld"], entry_point="envs.appworld.env:AppWorldEnv")
gymnasium.register(ENV_IDS["tau2_retail"], entry_point="envs.tau2_retail.env:Tau2RetailEnv")
