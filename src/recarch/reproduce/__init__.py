"""`recarch reproduce`: the EASRec paper's tables (III, IV, V) and Fig. 4 on our data, beside the
paper's own numbers (``easrec_paper.json``)."""
