"""The README's set-up commands stay true: CI runs the README's test command verbatim."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme.split("## Set-up")[1].split("##")[0], re.S)
    assert len(blocks) == 2, "README must give exactly two set-up commands"
    main_job, tests = blocks
    assert main_job.endswith("adbench run --method picard")
    assert tests in (ROOT / ".ci" / "run").read_text().splitlines()
