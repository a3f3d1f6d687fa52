# Installed by `pip install -e .` (requirements.txt) into .venv/etc/ipython/, where every IPython kernel
# of this virtual environment reads it. It loads the workbook's error display before any cell runs, so a
# cell run after a kernel restart says "the kernel was restarted: run this notebook from the top" in one
# line instead of a NameError chain, and AWS/HTTP errors show as one line (helpers/errors.py).
c = get_config()  # noqa: F821 (provided by IPython when it reads this file)
c.InteractiveShellApp.extensions = ["helpers.errors"]
