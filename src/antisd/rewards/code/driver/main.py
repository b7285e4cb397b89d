"""Inside the sandbox: the entry point. The JSON config in ``argv[1]`` picks the fork server
(``{"serve": true, ...}``, `antisd.rewards.code.driver.server`) or one program run once
(`antisd.rewards.code.driver.program.run_one_shot`)."""

import json
import sys

from antisd.rewards.code.driver.program import run_one_shot
from antisd.rewards.code.driver.server import serve


def main():
    """Read the config from ``argv[1]`` and start the server or the one-shot run."""
    config = json.loads(sys.argv[1])
    if config.get("serve"):
        serve(config)
        return
    run_one_shot(config)
