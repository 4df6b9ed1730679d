"""medi2i: MONAI-based medical image-to-image translation and deformable registration.

Importing the package is cheap: heavy optional back-ends (itk, SimpleITK, torchio, nilearn)
are imported lazily by the functions that need them.
"""

from __future__ import annotations

from medi2i.errors import Medi2iError, Medi2iInputError

__version__ = "0.1.0"

__all__ = ["Medi2iError", "Medi2iInputError", "__version__"]
