"""A method written outside l2ul, as a plugin author would: one file, a new ingredient, a registry entry.

``shrinkwrap``: gradient descent toward each instance's *second* most likely class under the original model
(a new ingredient, ``second_choice``, prepared from the original model), plus cross-entropy on "anchor"
images (a new data name: the caller must pass ``data={"anchors": (images, labels)}``). Nothing in the engine,
the CLI or the bench knows about it.
"""
import torch.nn.functional as F

from l2ul.methods import UnlearningMethod, register_ingredient, register_method


@register_ingredient("second_choice")
def second_choice(ctx):
    """Each forget instance's second most likely class under the original model."""
    logits = ctx.logits_before.clone()
    logits.scatter_(1, ctx.y_forget[:, None], float("-inf"))
    out = logits.argmax(1)
    out.seconds = 0.0
    return out


@register_method
class ShrinkWrap(UnlearningMethod):
    name = "shrinkwrap"
    description = "test plugin: descent toward the original's second choice"
    ingredients = ("second_choice",)
    optional_data = ("anchors",)
    data_needs = "none"

    def loss(self, model, batch, ctx, forward):
        logits = model(batch.x_forget)
        # the batch carries the labels; map each row back to its target through the labels' positions
        target = ctx.ingredients["second_choice"][_positions(ctx, batch)]
        loss = F.cross_entropy(logits, target)
        anchors = ctx.data.get("anchors")
        if anchors is not None:
            loss = loss + F.cross_entropy(model(anchors[0]), anchors[1])
        return loss


def _positions(ctx, batch):
    """Positions of the batch's rows in the forget set (rows are unique images)."""
    eq = (batch.x_forget[:, None] == ctx.x_forget[None]).flatten(2).all(2)
    return eq.float().argmax(1)
