"""Building blocks shared by the natural-image methods (park_thesis.md section 1).

Modules: :mod:`.generators` (ResNet-k generator, CycleGAN/CUT layout), :mod:`.discriminators` (70x70 PatchGAN,
pix2pixHD multi-scale PatchGAN), :mod:`.gan_losses` (LSGAN, hinge, non-saturating, vanilla, R1), :mod:`.pool`
(image history buffer), :mod:`.init` (weight init), :mod:`.schedules` (constant-then-linear LR decay),
:mod:`.feature_losses` (feature matching, VGG19 perceptual), :mod:`.patchnce` (PatchNCE, owned by CUT).
Import the submodules directly; nothing heavy is imported here.
"""
