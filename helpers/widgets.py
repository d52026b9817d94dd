"""The gradient explorer: pick a block and a checkpoint, see synthetic vs true gradients.

Thin glue over `plots.plot_gradient_comparison`, which does all the drawing (and is tested on its own).
Works in JupyterLab and on Colab (ipywidgets 7.6 or 8; on Colab with ipywidgets 8, enable the custom
widget manager first).
Notebooks 02, 03, 07 and 10.
"""
import ipywidgets as widgets
import matplotlib.pyplot as plt
from IPython.display import display

from . import plots


class GradientExplorer:
    """A dropdown (block) and a slider (checkpoint) over what `dni.DNI.measure` recorded during training.

    learner.snapshots[k][block] = (synthetic, true) at history.iteration[k]. `plot` is the drawing
    function, replaceable for tests; `self.figure` is the last figure drawn. `label` names what the learner
    follows in the panels (default: the plot's own, "synthetic"; DGL: label="DGL head").
    """

    def __init__(self, learner, history, size=None, plot=plots.plot_gradient_comparison, label=None):
        if not learner.snapshots:
            raise ValueError("the learner recorded no snapshots: train it with training.train first.")
        self.snapshots, self.history, self.size, self.plot = learner.snapshots, history, size, plot
        self.options = {} if label is None else {"label": label}
        blocks = len(self.snapshots[0])
        self.layer = widgets.Dropdown(options=[(f"block {i}", i) for i in range(blocks)], value=blocks - 1,
                                      description="block")
        self.checkpoint = widgets.IntSlider(value=len(self.snapshots) - 1, min=0, max=len(self.snapshots) - 1,
                                            description="checkpoint", continuous_update=False)
        self.caption = widgets.Label()
        self.output = widgets.Output()
        self.figure = None
        self.layer.observe(self.render, names="value")
        self.checkpoint.observe(self.render, names="value")
        self.render()

    def render(self, change=None):
        k, block = self.checkpoint.value, self.layer.value
        synthetic, true = self.snapshots[k][block]
        iteration = self.history.iteration[k]
        self.caption.value = f"iteration {iteration:,}"
        self.figure = self.plot(synthetic, true, block, iteration, history=self.history, size=self.size,
                                **self.options)
        with self.output:
            self.output.clear_output(wait=True)
            display(self.figure)
        plt.close(self.figure)  # shown once, in the widget; not again by the inline backend

    def widget(self):
        return widgets.VBox([widgets.HBox([self.layer, self.checkpoint, self.caption]), self.output])

    def _ipython_display_(self):
        display(self.widget())
