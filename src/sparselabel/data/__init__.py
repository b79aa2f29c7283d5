"""Videos, tubes and datasets: the data model everything else reads."""

from sparselabel.data.dataset import Dataset, Video, load_dataset
from sparselabel.data.tubes import Tube

__all__ = ["Dataset", "Tube", "Video", "load_dataset"]
