"""The maths of evaluation: k-NN search and votes, classification and AUROC figures, the paper's numbers."""
