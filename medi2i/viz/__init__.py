"""Visual QA: world-consistent slice viewers, overlays, static figures and self-contained HTML reports.

Modules (import the one you need; nothing heavy is imported here):

* :mod:`medi2i.viz.windows` - CT window/level presets (brain, subdural, soft tissue, bone) and MR
  percentile windows.
* :mod:`medi2i.viz.orientation` - reorientation to RAS display order from the affine; axial / coronal /
  sagittal cuts under the neurological (default) or radiological convention.
* :mod:`medi2i.viz.viewer` - :func:`~medi2i.viz.viewer.render_orthogonal` (pure, headless) and the
  ipywidgets :class:`~medi2i.viz.viewer.OrthogonalViewer`; optional ``ipyniivue`` 3D view.
* :mod:`medi2i.viz.overlays` - label contours/alpha, signed difference maps, Jacobian determinant with
  folds, deformation grid, checkerboard, colour blend.
* :mod:`medi2i.viz.figures` - static synthesis / registration / trajectory figures and key-slice mosaics.
* :mod:`medi2i.viz.report` - self-contained HTML reports (``medi2i qa``), TensorBoard curves.
* :mod:`medi2i.viz.cases` - QA cases from explicit files or manifests.
* :mod:`medi2i.viz.gallery` - natural-image method galleries (input / output / reference grids, photos and
  slices), a self-contained index page, and trained-model-or-tiny-smoke-model loading for the gallery notebook.
* :mod:`medi2i.viz.baselines` - labelled stand-ins for demos (per-tissue intensity baseline, oracle
  demo field); not methods of this project.
"""

from __future__ import annotations
