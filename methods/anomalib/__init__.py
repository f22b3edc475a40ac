"""`anomalib` models behind the harness's method interface, with offline pretrained backbones and a fast coreset."""
