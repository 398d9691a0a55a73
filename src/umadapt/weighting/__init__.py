"""Multi-task loss weighting: how a model turns its per-task losses ``L_t`` into the loss it minimises.

Every weighting is an ``nn.Module`` injected into any :class:`~umadapt.methods.base.MultiTaskModel` as
``model.init_args.weighting`` (default :class:`FixedWeighting`, i.e. ``Σ_t w_t L_t`` with ``model.loss_weights``)::

    model:
      init_args:
        weighting:
          class_path: umadapt.weighting.UncertaintyWeighting

One module per algorithm, each stating its paper's update rule: :mod:`.fixed`, :mod:`.uncertainty` (Kendall et al.
2018), :mod:`.dwa` (Liu et al. 2019), :mod:`.gradnorm` (Chen et al. 2018), :mod:`.pcgrad` (Yu et al. 2020); the
interface in :mod:`.base` and the gradient machinery in :mod:`.gradients`. Every public name is importable from here.

The model calls ``weighting(losses, model)`` wherever it used to take the weighted sum. In training (the model in
train mode with autograd on) the weighting may learn or adapt; in evaluation it returns ``Σ_t w_t L_t`` with its
current weights and changes nothing. The weights used at the last training call are in
:attr:`LossWeighting.last_weights` (the model logs them as ``train/weights/<task>``). Once its optimizers exist the
model passes them to :meth:`LossWeighting.check_optimizers`, which refuses a learned weighting they do not hold.

**Per-task gradients.** :class:`GradNorm` and :class:`PCGrad` need the gradient of every task's loss with respect
to the parameters the tasks share (``model.shared_parameters()`` if the model defines it, else
``model.encoder.shared_parameters()`` if the encoder defines it, else all encoder parameters). They take those
gradients with ``torch.autograd.grad`` inside the call and return a loss whose *value* is the weighted sum and whose
*gradient* is the method's: the difference to the plain gradient enters through :func:`inject_gradient`, a zero-valued
term whose backward deposits a given tensor on given parameters. So they need no manual optimization, work under
automatic and manual optimization, with AMP loss scaling and with other loss terms added to theirs (adversarial,
distillation), whose gradients pass through unchanged. A configuration that cannot provide the per-task gradients
raises an error naming the cause: a single task, an encoder that shares no parameter between tasks (e.g.
:class:`~umadapt.nn.ProgressiveEncoder`), a task whose loss does not reach the shared parameters, losses computed
without autograd, or a method whose optimizers do not hold the weighting's own parameters.
"""

from umadapt.weighting.base import LossWeighting
from umadapt.weighting.dwa import DynamicWeightAveraging, dwa_weights
from umadapt.weighting.fixed import FixedWeighting
from umadapt.weighting.gradients import inject_gradient, shared_parameters, task_gradients
from umadapt.weighting.gradnorm import GradNorm, gradnorm_targets
from umadapt.weighting.pcgrad import PCGrad, project_conflicting
from umadapt.weighting.uncertainty import UncertaintyWeighting

__all__ = [
    "DynamicWeightAveraging",
    "FixedWeighting",
    "GradNorm",
    "LossWeighting",
    "PCGrad",
    "UncertaintyWeighting",
    "dwa_weights",
    "gradnorm_targets",
    "inject_gradient",
    "project_conflicting",
    "shared_parameters",
    "task_gradients",
]
