"""Helpers for the "Synthetic Gradients, Hands-On" notebooks.

Each notebook first builds an idea in the open; later notebooks import the same thing from here. The
modules, from the bottom up (a module imports only modules listed above it), with the notebooks that
use them:

    config         run sizes of every notebook (SG_SIZE), device, seeding             00-10
    data           MNIST, CIFAR-10 or its labelled stand-in, batches, augmentation      00-10
    tasks          copy, repeat-copy and text streams for recurrent nets                08
    models         the paper's networks as lists of blocks (FCN, CNN)                   00-10
    synthesizers   gradient and input synthesizers; the interface's arithmetic          02-09
    probe          received vs true gradients on a copy: cosines, relative error        02-07, 09, 10
    analysis       linear CKA and linear probes                                         05
    training       History, the training loop, backprop and no-backprop                 01-10
    dni            DNI and cDNI                                                         02-10
    critics        synthetic loss and critic (Sobolev training)                         04
    feedback       feedback alignment (FA) and direct feedback alignment (DFA)           05
    unlock         the complete unlock: synthetic inputs and gradients, in processes    06
    dgl            decoupled greedy learning: a local loss per block, buffered variant  10
    update_rates   stochastic and multi-rate updates, simulated in one process          09
    rnn            LSTM, windowed truncated BPTT with synthetic gradients               08
    pipeline       one process per stage over torch.distributed, locked or decoupled    09
    learners       the learner protocol and the registry of every method by name        01-10
    timing         one step timer; full-unlock step times; pipeline throughput         06, 09
    plots          every figure (learning curves, gradients, recurrent, timelines)      00-10
    diagrams       each method's computational graph, in the paper's colours            00-10
    widgets        the gradient explorer (ipywidgets)                                   02, 03, 07, 10
    playground     the live DNI playground: spirals, every knob, live panels (widget)    03b
    results        results files, one JSON per notebook, written atomically             01-10
    reference      the long size's committed runs beside the quick ones and Table 1     01-06, 09, 10
    alignment      gradient, update and step cosines against accuracy over seeds       03-05
    recurrent_tier the long recurrent tier's runs beside the paper's table             08
    gpu_check      everything that touches a GPU, a few steps each (make gpu-check)      00, README
"""
__version__ = "0.1.0"

MODULES = ("config", "data", "tasks", "models", "synthesizers", "probe", "analysis", "training", "dni",
           "critics", "feedback", "unlock", "dgl", "update_rates", "rnn", "pipeline", "learners", "timing", "plots",
           "diagrams", "widgets", "playground", "results", "reference", "alignment", "recurrent_tier",
           "gpu_check")
