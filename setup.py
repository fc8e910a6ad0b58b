"""Build steps pyproject.toml cannot express; everything else is there.

- The lm-eval registration: merged_vlm_lm_eval.pth goes beside the packages (normal and editable installs
  alike). lm-eval 0.4.13 finds models only in its own registry; the .pth registers `merged_lm` there when
  lm-eval loads (see harness_ext/compat/lm_eval.py).
- The shipped files: a wheel carries the recipes and the tiny-world family as package data under
  merge_models/shipped/ (the layout of the checkout's root, see merge_models/shipped.py); an editable
  install reads them from the checkout.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HERE = Path(__file__).parent
PTH = HERE / "merged_vlm_lm_eval.pth"
SHIPPED = ("recipes", "models/tiny-world")  # merge_models.shipped.CONTENTS
SHIPPED_PACKAGE_FOLDER = Path("merge_models") / "shipped"


class BuildPyWithPthAndShipped(build_py):
    def run(self):
        super().run()
        if not self.editable_mode:
            self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name))
            for folder in SHIPPED:
                self.copy_tree(str(HERE / folder), str(Path(self.build_lib) / SHIPPED_PACKAGE_FOLDER / folder))


class EditableWheelWithPth(editable_wheel):
    def _install_namespaces(self, installation_dir, pth_prefix):
        super()._install_namespaces(installation_dir, pth_prefix)
        shutil.copy(PTH, Path(installation_dir) / PTH.name)


setup(cmdclass={"build_py": BuildPyWithPthAndShipped, "editable_wheel": EditableWheelWithPth})
