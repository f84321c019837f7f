from st_lmtx.losses.lmtx_triplet_loss import LMTXTripletLoss

__all__ = ["LMTXTripletLoss"]
