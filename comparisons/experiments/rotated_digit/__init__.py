r"""The rotated-digit experiment (Figure 4 of Gal & Ghahramani, 2016): model uncertainty of a
dropout LeNet as a test digit is rotated away from anything it was trained on.

A test image of the digit 1 is rotated through ``A`` angles (default: 12 angles, 0 to 165
degrees in 15-degree steps, :data:`DEFAULT_ANGLES_DEG` -- a choice made here; the last ones
approach an upside-down 1). For every rotated image :math:`\mathbf{x}_a` we draw :math:`T`
(default 100) MC dropout forward passes (:func:`vi_dropout.predict.mc_predict` on the LeNet)
and keep

* the softmax INPUTS :math:`\text{logits}_{t,a}` and OUTPUTS
  :math:`p_{t,a} = \operatorname{softmax}(\text{logits}_{t,a})` of the classes with the highest
  MC-averaged probability at any angle (scatter plots, one colour per class, as in the paper);
* the predictive entropy, mutual information and variation ratio of
  :func:`vi_dropout.summaries.classification_summary`:

  .. math::
      H_a = -\sum_c \bar{p}_{a,c}\log\bar{p}_{a,c}, \quad
      \mathrm{MI}_a = H_a - \frac{1}{T}\sum_t H(p_{t,a}), \quad
      \mathrm{VR}_a = 1 - \frac{\max_c \#\{t: \arg\max p_{t,a} = c\}}{T};

* next to them standard dropout's single softmax (eval mode; its entropy, but no MI or variation
  ratio: one deterministic pass has none).

Rotation uses :func:`scipy.ndimage.rotate` (bilinear, ``reshape=False``, zero fill, positive
angles counter-clockwise as shown by ``imshow``), clipped to :math:`[0, 1]`.

:func:`run` is the whole experiment (:class:`RotatedDigitSettings` -> :class:`RotatedDigitResult`):
load the digits (or MNIST), train the LeNet (:func:`comparisons.networks.lenet.train_lenet`;
with ``path="pyro"`` also :func:`train_converted_lenet`),
score MC and standard dropout's calibration on the test split
(:func:`comparisons.metrics.calibration.calibration_records`) and sweep the rotations
(:func:`sweep_rotations`). Its tidy records use the angle as ``split`` for the per-angle metrics
and an empty ``split`` for the calibration metrics (the whole test split). No file is written
here: :func:`comparisons.report.rotated_digit.write_report` writes the figures and tables.

Example:
    >>> from comparisons.experiments.rotated_digit import select_digit, sweep_rotations
    >>> from comparisons.datasets.digits import load_digits_split
    >>> from comparisons.networks.lenet import LeNet, train_lenet
    >>> d = load_digits_split()
    >>> net = LeNet(8, seed=0)
    >>> _ = train_lenet(net, d.x_train, d.y_train, epochs=2, progress=False)
    >>> image, _ = select_digit(d.x_test, d.y_test, digit=1)
    >>> res = sweep_rotations(net, image, num_samples=20, digit=1)
    >>> res.mc_logits.shape, len(res.angles_deg), len(res.top_classes)
    (torch.Size([20, 12, 10]), 12, 3)

The package holds the experiment's parts: :mod:`.sweep` (the rotations and their records),
:mod:`.pyro_path` (the LeNet trained through the ELBO with SVI, and the agreement of the two
paths image by image), :mod:`.settings` (:class:`RotatedDigitSettings`, light: no torch) and
:mod:`.experiment` (run, result). The names below are imported on first use (``__getattr__``),
so that ``python -m comparisons rotated-digit --help`` reads the settings without loading torch.
"""

import lazy_loader

# the names and their modules are in __init__.pyi; lazy_loader (scientific-python SPEC 1) imports
# each module on first use
__getattr__, __dir__, __all__ = lazy_loader.attach_stub(__name__, __file__)
