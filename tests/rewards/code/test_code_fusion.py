"""The Sandbox Fusion backend against a fake service (tests/rewards/code/fusion_fake.py)."""

from __future__ import annotations

from fusion_fake import FakeSandboxFusion

from antisd.rewards.code.fusion import RESULT_FILE, SandboxFusionExecutor, map_response
from antisd.rewards.code.harness import check_program
from antisd.rewards.code.sandbox import Limits
from antisd.rewards.code.tasks import AssertSuite, CodeTask, IOSuite

TASK = CodeTask(task_id="t/sq", benchmark="test", prompt="", entry_point="sq", reference="def sq(x):\n    return x * x\n",
                base=IOSuite(([2], [3.5], [-4])))


def test_request_has_the_client_schema():
    fake = FakeSandboxFusion()
    executor = SandboxFusionExecutor("http://sandbox:8080/", transport=fake)
    payload = executor.payload({"mode": "io"}, Limits(wall_s=7, memory_bytes=1 << 30))
    assert set(payload) == {"code", "language", "stdin", "run_timeout", "compile_timeout", "memory_limit_MB",
                            "files", "fetch_files"}
    assert payload["language"] == "python" and payload["run_timeout"] == 7 and payload["memory_limit_MB"] == 1024
    assert payload["fetch_files"] == [RESULT_FILE]


def test_verdicts_through_the_service(harness_config):
    executor = SandboxFusionExecutor(transport=FakeSandboxFusion())
    assert check_program(TASK, TASK.reference, executor, harness_config).passed()
    assert not check_program(TASK, "def sq(x):\n    return x + x\n", executor, harness_config).passed()
    asserts = CodeTask(task_id="t/a", benchmark="test", prompt="", entry_point="g", reference="def g(x):\n    return [x]\n",
                       base=AssertSuite(("assert g(1) == [1]", "assert len(g(2)) == 1"), frozenset({"g"})))
    assert check_program(asserts, asserts.reference, executor, harness_config).passed()
    assert not check_program(asserts, "def g(x):\n    return [x, x]\n", executor, harness_config).passed()


def test_timeout_and_errors_map_to_statuses(harness_config):
    executor = SandboxFusionExecutor(transport=FakeSandboxFusion())
    request = {"mode": "io", "program": "import time\ndef f():\n    time.sleep(30)\n", "setup": "", "entry_point": "f",
               "inputs": [[]], "time_limits": None}
    assert executor.run(request, Limits(wall_s=1)).status == "timeout"
    failing = SandboxFusionExecutor(transport=FakeSandboxFusion(sandbox_error="no executor"), retry_delay_s=0)
    result = failing.run(request, Limits(wall_s=1))
    assert result.status == "sandbox_error" and "no executor" in result.message
    flaky = SandboxFusionExecutor(transport=FakeSandboxFusion(http_failures=1), retry_delay_s=0, max_attempts=2)
    assert check_program(TASK, TASK.reference, flaky, harness_config).passed()
    down = SandboxFusionExecutor(transport=FakeSandboxFusion(http_failures=5), retry_delay_s=0, max_attempts=2)
    result = check_program(TASK, TASK.reference, down, harness_config)
    assert result.base.status == "sandbox_error" and not result.passed()
    corrupt = SandboxFusionExecutor(transport=FakeSandboxFusion(corrupt_files=True), retry_delay_s=0)
    assert corrupt.run(request | {"program": "def f():\n    return 1\n"}, Limits(wall_s=5)).status == "sandbox_error"


def test_malformed_responses_are_sandbox_errors():
    limits = Limits()
    request = {"mode": "io", "inputs": [[1]]}
    for response in (None, [], {"status": "Weird"}, {"status": "Success", "files": {RESULT_FILE: 5}}):
        assert map_response(response, limits, 0.1, request).status == "sandbox_error"
    ok = map_response({"status": "Failed", "run_result": {"status": "Error", "return_code": 1}, "files": {}}, limits, 0.1,
                      request)
    assert ok.status == "finished" and ok.records == []
