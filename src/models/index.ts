export { Attention, type AttentionOptions } from './attention.js';
export { UNet2DConditionModel, parseUNetConfig, type UNetConfig, type AddedCond, type UNetOutput } from './unet_2d_condition.js';
export { AutoencoderKL, DiagonalGaussianDistribution, parseVAEConfig, renameLegacyVAEKeys, type VAEConfig } from './autoencoder_kl.js';
export { CLIPTextModel, CLIPTextModelWithProjection, parseCLIPTextConfig, type CLIPTextConfig, type CLIPTextOutput } from './clip_text.js';
export { ConfigError, type RawConfig } from './config.js';
export * from './loading.js';
export { encodeSdxlPrompt, type SdxlTextEncoders } from './sdxl_prompt.js';
export { CompatibilityError, checkImageSide, checkUNetFits, pixelMultiple, readPipelineShape, unetMismatches, type PipelineShape } from './compatibility.js';
export { LORA_WEIGHTS_NAME, LoraFileError, attachLora, diffusersLoraStateDict, disposeLoraFile, loraFilePath, mergeLora, readLoraFile, type LoraComponent, type LoraFile, type LoraLayerWeights, type LoraModels } from './lora_files.js';
