"""TFRS models; `builders.build_model` turns config into one."""
