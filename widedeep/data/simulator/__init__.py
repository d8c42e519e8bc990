"""A click-log simulator with a planted, documented ground truth.

For learning the library and for benchmarks: every impression carries the
probability of a click that generated it (`true_probability`), so a model can be
compared with the best possible one (the *oracle*, whose AUC and log loss are
recorded in `meta.json`). One concept a module:

* `config`: `SimulatorConfig`, the settings, and `first_test_round`;
* `world`: the planted world and the true click logit (what each effect does);
* `impressions`: sampling the impressions causally, round by round (`simulate`);
* `dataset`: the schema, the oracle metrics and writing the dataset directory.

A seed gives byte-identical records. Example:

```python
from widedeep.data.simulator import SimulatorConfig, simulate_dataset

meta = simulate_dataset("/tmp/sim", SimulatorConfig(seed=1))
print(meta["oracle_auc"], meta["base_click_rate"])
```
"""

from widedeep.data.simulator.config import SimulatorConfig, first_test_round
from widedeep.data.simulator.dataset import build_schema, simulate_dataset
from widedeep.data.simulator.impressions import simulate
from widedeep.data.simulator.world import click_logit

__all__ = [
    "SimulatorConfig",
    "build_schema",
    "click_logit",
    "first_test_round",
    "simulate",
    "simulate_dataset",
]
