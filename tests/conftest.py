"""Shared test settings: the `notebooks` marker for tests that execute whole notebooks."""



def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "notebooks: executes whole notebooks in a kernel (slow); `make test` runs these after the unit tests",
    )

