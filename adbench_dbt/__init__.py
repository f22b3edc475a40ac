"""adbench-dbt: benchmark harness for unsupervised anomaly localization in digital breast tomosynthesis."""
from adbench_dbt.data.slices import Slice
from adbench_dbt.method import Method, WindowMethod
from adbench_dbt.registry import available_methods, create_method, get_method, register_method

__version__ = "0.1.0"
__all__ = ["Method", "WindowMethod", "Slice", "register_method", "create_method", "get_method",
           "available_methods", "__version__"]
