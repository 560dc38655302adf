"""The VAE contract and the register_vaes hook (issue 19, item 3).

A second, deliberately different VAE (2 latent channels, 4 x 4 downsampling) is registered the
way a plugin would; the pipeline, saving/loading and generation must take its geometry from it.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mka_core.config import StrictModel
from mka_core.errors import PluginError
from mka_core.models.vae import AutoencoderKL, DiagonalGaussian, VAEConfig
from mka_core.models.vae_contract import DEFAULT_VAE, LatentAutoencoder, VAEGeometry, vae_class
from mka_core.plugins import manager
from mka_core.plugins.hookspecs import hookimpl
from tests.conftest import run_cli


class PoolConfig(StrictModel):
    channels: int = 2
    factor: int = 4
    scale_factor: float = 0.5


class PoolVAE(LatentAutoencoder):
    """Average-pools the mel by ``factor`` and maps it to ``channels`` latent channels with 1x1 convs."""

    name = "pool-vae"
    config_class = PoolConfig

    def __init__(self, config: PoolConfig) -> None:
        super().__init__(config)
        self.enc = nn.Conv2d(1, 2 * config.channels, 1)
        self.dec = nn.Conv2d(config.channels, 1, 1)

    @classmethod
    def geometry(cls, config: PoolConfig) -> VAEGeometry:
        return VAEGeometry(latent_channels=config.channels, downsampling=(config.factor, config.factor))

    @property
    def scale_factor_value(self) -> float:
        return float(self.config.scale_factor)

    def set_scale_factor(self, value: float) -> None:
        self.config.scale_factor = float(value)

    def encode(self, mel):
        return DiagonalGaussian(self.enc(F.avg_pool2d(mel, self.config.factor)))

    def decode(self, z, tile=None, overlap=8):
        mel = torch.tanh(self.dec(z)) * 2 - 3  # bounded to [-5, -1], a quiet log10 mel, whatever the latents
        return F.interpolate(mel, scale_factor=float(self.config.factor), mode="nearest")


class PoolPlugin:
    """A plugin object with one hook (an installed plugin would be a module with the same function)."""

    @staticmethod
    @hookimpl
    def register_vaes(register):
        register(PoolVAE)


@pytest.fixture
def pool_vae():
    manager.register_in_process(PoolPlugin, name="pool-vae-plugin", distribution="pool-vae-dist", version="1.0")
    return PoolVAE(PoolConfig())


def pool_pipeline(vae):
    from mka_core.models.unet import UNet, UNetConfig
    from mka_core.pipeline import Pipeline
    from mka_core.presets import build_pipeline

    base = build_pipeline("tiny", cond="bert", seed=0)
    config = UNetConfig.preset("tiny").model_copy(update={"context_dim": base.config.space.dim, "in_channels": 2,
                                                          "out_channels": 2})
    unet = UNet(UNetConfig.model_validate(config.model_dump()))
    return Pipeline(base.config, base.conditioner, vae, unet, base.vocoder, device="cpu")


def test_the_builtin_vae_is_registered_through_its_entry_point():
    registration = manager.registry().get("vae", DEFAULT_VAE)
    assert registration.obj is AutoencoderKL and registration.distribution == "mka"
    assert registration.plugin == "mka:vaes"
    assert vae_class(None) is AutoencoderKL


def test_autoencoder_kl_states_its_geometry():
    base = AutoencoderKL.geometry(VAEConfig.preset("base"))
    assert base == VAEGeometry(latent_channels=4, downsampling=(8, 8))
    assert base.latent_shape(80, 624) == (4, 10, 78)  # the paper's 1x80x624 -> 4x10x78
    vae = AutoencoderKL(VAEConfig.preset("tiny"))
    assert vae.latent_channels == 4 and vae.downsampling == (8, 8)
    mel = torch.randn(1, 1, 80, 32)
    z = vae.encode_latents(mel, sample=False)
    assert tuple(z.shape[1:]) == vae.latent_shape(80, 32)


def test_the_pipeline_reads_its_geometry_from_the_vae(pool_vae):
    pipe = pool_pipeline(pool_vae)
    assert pipe.vae_factor == 4
    assert pipe.frame_granularity == 4 * pipe.unet.config.downsample_factor
    frames, _ = pipe.frames_for(0.5)
    assert pipe.latent_shape(frames) == (2, 20, frames // 4)
    result = pipe(["a dog barks"], duration=0.5, steps=2, seed=0)
    assert result.waveforms.shape == (1, 8000) and torch.isfinite(result.waveforms).all()
    assert result.mels.shape[-2:] == (80, frames)


def test_a_folder_records_its_vae_and_loads_it_through_the_registry(pool_vae, tmp_path):
    from mka_core.pipeline import Pipeline

    pool_pipeline(pool_vae).save_pretrained(tmp_path / "m")
    index = json.loads((tmp_path / "m" / "model_index.json").read_text())
    assert index["pipeline"]["vae"] == "pool-vae"
    assert index["components"]["vae"]["plugin"] == "pool-vae"
    assert index["components"]["vae"]["distribution"] == "pool-vae-dist"
    loaded = Pipeline.from_pretrained(tmp_path / "m", device="cpu")
    assert type(loaded.vae) is PoolVAE and loaded.vae.scale_factor_value == 0.5
    torch.testing.assert_close(loaded.vae.enc.weight, pool_vae.enc.weight)

    manager.reset_plugins()  # the plugin is gone: loading says which VAE is missing
    with pytest.raises(PluginError, match="Unknown vae 'pool-vae'"):
        Pipeline.from_pretrained(tmp_path / "m", device="cpu")


def test_a_folder_from_before_vae_plugins_loads_the_builtin(tiny_model_dir, tmp_path):
    import shutil

    from mka_core.pipeline import Pipeline

    folder = tmp_path / "old"
    shutil.copytree(tiny_model_dir, folder)
    index_path = folder / "model_index.json"
    index = json.loads(index_path.read_text())
    index["pipeline"].pop("vae", None)
    index["components"]["vae"].pop("plugin", None)
    index_path.write_text(json.dumps(index))
    vae_json = folder / "vae" / "config.json"
    vae_json.write_text(json.dumps({k: v for k, v in json.loads(vae_json.read_text()).items() if k != "plugin"}))
    pipe = Pipeline.from_pretrained(folder, device="cpu")
    assert type(pipe.vae) is AutoencoderKL and pipe.config.vae == DEFAULT_VAE


def test_mka_info_reports_the_vae_geometry():
    result = run_cli("info", "--preset", "base", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["vae"] == {"name": "autoencoder-kl", "latent_channels": 4, "downsampling": [8, 8]}
    assert info["latent_shape"] == [4, 10, 78] and info["mel_shape"] == [1, 80, 624]
    assert info["frame_granularity"] == 16


def test_diffusion_training_reads_latents_through_the_contract(pool_vae):
    from training.targets.diffusion import posterior_moments

    vae = AutoencoderKL(VAEConfig.preset("tiny")).eval()
    mel = torch.randn(2, 1, 80, 32)
    with torch.no_grad():
        moments = posterior_moments(vae, mel)
        mean, logvar = vae.quant_conv(vae.encoder(mel)).chunk(2, dim=1)
    torch.testing.assert_close(moments, torch.cat([mean, logvar.clamp(-30.0, 20.0)], dim=1), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        other = posterior_moments(pool_vae, mel)  # any registered VAE, not only AutoencoderKL
    assert other.shape == (2, 2 * pool_vae.latent_channels, 20, 8)
