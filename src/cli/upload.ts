// `diffusion-dpo upload --repo_id ORG/NAME OUTPUT_DIR`: a trained result (pipeline, UNet or LoRA)
// to a Hub model repo, in one commit, with a generated model card unless the folder has its own
// README.md. Everything that can be wrong locally (flags, token, folder) is checked before the
// first request, so a failed upload is a Hub failure, reported with its HTTP status.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkRepoId, hubEndpoint } from '../hub/index.js';
import { hubIdOf, renderModelCard, type UploadKind } from '../hub/model_card.js';
import { requireHubToken } from '../hub/token.js';
import { uploadFacts } from '../hub/training_facts.js';
import type { UploadEntry, UploadEvent } from '../hub/upload.js';
import { inspectUploadFolder, type UploadContents } from '../hub/upload_contents.js';
import { UserError } from '../util/errors.js';
import { flagsHelp } from '../util/flags.js';
import { HELP_FLAG, parseCommandFlags } from './args.js';
import { CliError } from './errors.js';
import type { Command } from './main.js';

const FLAGS = {
  repo_id: { type: 'string', default: null, valueName: 'ORG/NAME', help: 'the Hub model repo (created when missing)' },
  private: { type: 'boolean', default: false, help: 'create the repo private (else the owner\'s default, public for users; an existing repo keeps its visibility)' },
  revision: { type: 'string', default: 'main', valueName: 'R', help: 'the branch to commit to (created from main when missing)' },
  commit_message: { type: 'string', default: null, valueName: 'M', help: 'the commit title (default: "Upload <kind> trained with diffusion-dpo")' },
  license: { type: 'string', default: null, valueName: 'L', help: 'the card\'s license id (default: openrail++ for SDXL and SD 2.x, creativeml-openrail-m for SD 1.x, none when the family is unknown)' },
  base_model: { type: 'string', default: null, valueName: 'M', help: 'the Hub id of the model trained from, for the card (overrides what the output records: a LoRA file\'s metadata or training_run.json; checkpoints record none)' },
  ...HELP_FLAG,
} as const;

const HELP = `usage: diffusion-dpo upload --repo_id ORG/NAME OUTPUT_DIR [options]

Uploads a trained result to a Hugging Face Hub model repo, all files in one commit:
  a pipeline  a folder with model_index.json (train's output_dir after a whole-UNet run)
  a UNet      a folder with the config.json of a UNet2DConditionModel, or with unet/config.json
              and no model_index.json (a checkpoint-N folder of a whole-UNet run)
  a LoRA      a folder with pytorch_lora_weights.safetensors (train's output_dir after a LoRA
              run), or a .safetensors LoRA file by itself

Not uploaded: training checkpoints (checkpoint-*/), logs/, bad_rows*.jsonl, hidden files and
folders, temporary files (*.tmp, *.incomplete, *~), and in a checkpoint folder its optimizer and
trainer state. Uploaded with the weights: report.html (the training curves) and eval.json.

The model card: the folder's own README.md when it has one (kept as it is), else a generated
README.md: license, base model, tags and library in its front matter; base model, dataset,
objective, beta, steps, effective batch, learning rate and resolution as the output records them
("unknown" where it does not); eval.json's numbers as a table; a diffusers usage snippet.

The token: HF_TOKEN, else the file 'huggingface-cli login' writes ($HF_TOKEN_PATH, else
$HF_HOME/token, else ~/.cache/huggingface/token); it needs write access. HF_ENDPOINT points
elsewhere than https://huggingface.co.

options:
${flagsHelp(FLAGS, { width: 28 })}`;

const KIND_NAMES: Record<UploadKind, string> = { pipeline: 'pipeline', unet: 'UNet', lora: 'LoRA' };

/** eval.json of the folder: a JSON object, or null when there is none. */
function readEvalJson(c: UploadContents): Record<string, unknown> | null {
  const file = join(c.folder, 'eval.json');
  if (c.singleFile || !existsSync(file)) return null;
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${(e as Error).message}); fix it or move it out of the folder`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${file}: expected a JSON object of metrics`);
  return v as Record<string, unknown>;
}

function human(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} KB`;
}

/** Progress on stderr: what happened to the repo, the phases, and each file once sent. */
function progress(c: UploadContents, repoId: string, revision: string, wantedPrivate: boolean): (e: UploadEvent) => void {
  const sizes = new Map(c.files.map((f) => [f.path, f.size]));
  const sent = new Set<string>();
  return (e) => {
    if (e.event === 'repo') {
      if (e.created) console.error(`created ${wantedPrivate ? 'private ' : ''}repo ${repoId}`);
      else console.error(`${repoId} exists${wantedPrivate ? ' (--private applies to a new repo only: its visibility is unchanged)' : ''}`);
    } else if (e.event === 'branch') {
      console.error(e.created ? `created branch ${revision}` : `branch ${revision} exists`);
    } else if (e.event === 'phase') {
      if (e.phase === 'uploadingLargeFiles') console.error('hashing and sending the weights (LFS)...');
      if (e.phase === 'committing') console.error(`committing to ${repoId}@${revision}...`);
    } else if (e.state === 'uploading' && e.progress >= 1 && !sent.has(e.path)) {
      sent.add(e.path);
      const size = sizes.get(e.path);
      console.error(`  sent ${e.path}${size !== undefined ? ` (${human(size)})` : ''}`);
    }
  };
}

export const uploadCommand: Command = {
  summary: 'upload a trained pipeline, UNet or LoRA to the Hugging Face Hub, with a model card',
  async run(argv) {
    const { values, positionals, given } = parseCommandFlags('upload', FLAGS, argv, { positionals: true });
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.repo_id) throw new CliError(`--repo_id is required\n\n${HELP}`, 2);
    if (positionals.length !== 1) throw new CliError(`expected one OUTPUT_DIR (a folder, or a LoRA file), got ${positionals.length}\n\n${HELP}`, 2);
    const repoId = values.repo_id;
    try {
      checkRepoId(repoId);
    } catch (e) {
      throw new CliError(`--repo_id: ${(e as Error).message}`, 2);
    }
    if (!repoId.includes('/')) throw new CliError(`--repo_id ${repoId}: give the owner too (ORG/NAME, or your user name/NAME)`, 2);
    if (!values.revision) throw new CliError('--revision must name a branch', 2);
    if (values.license !== null && !/^[a-z0-9][a-z0-9.+-]*$/i.test(values.license)) {
      throw new CliError(`--license '${values.license}' is not a license id (such as apache-2.0, openrail++, other)`, 2);
    }
    if (values.base_model !== null && hubIdOf(values.base_model) !== values.base_model) {
      throw new CliError(`--base_model '${values.base_model}' is not a Hub model id (ORG/NAME)`, 2);
    }
    const token = requireHubToken();
    const contents = inspectUploadFolder(positionals[0]!);
    const cardFlags = (['license', 'base_model'] as const).filter((f) => given.has(f));
    if (contents.userReadme && cardFlags.length > 0) {
      throw new CliError(`--${cardFlags[0]} shapes the generated model card, but ${join(contents.folder, 'README.md')} is uploaded as the card instead (edit it, or move it away)`, 2);
    }
    const entries: UploadEntry[] = contents.files.map((f) => ({ path: f.path, source: { file: f.local } }));
    if (!contents.userReadme) {
      const facts = uploadFacts(contents);
      const card = renderModelCard({
        repoId, revision: values.revision, kind: contents.kind, family: contents.family, license: values.license,
        facts: values.base_model ? { ...facts, baseModel: values.base_model } : facts,
        evalJson: readEvalJson(contents),
        layout: {
          unetSubfolder: contents.unetSubfolder, loraWeightName: contents.loraWeightName,
          report: contents.files.some((f) => f.path === 'report.html'),
        },
      });
      entries.push({ path: 'README.md', source: { text: card } });
    }
    for (const s of contents.skipped) console.error(`left out: ${s}`);
    const total = contents.files.reduce((a, f) => a + f.size, 0);
    console.error(`uploading ${KIND_NAMES[contents.kind]} ${positionals[0]}: ${entries.length} files (${human(total)}) to ${repoId}@${values.revision}`);
    // @huggingface/hub takes about 0.1 s to load: only this command pays for it
    const { uploadToHub } = await import('../hub/upload.js');
    const result = await uploadToHub(entries, {
      repoId, revision: values.revision, private: values.private, token: token.token, endpoint: hubEndpoint(),
      commitMessage: values.commit_message || `Upload ${KIND_NAMES[contents.kind]} trained with diffusion-dpo`,
      onEvent: progress(contents, repoId, values.revision, values.private),
    });
    console.log(JSON.stringify({
      repo_id: repoId, revision: values.revision, kind: contents.kind, commit: result.commit, url: result.url, repo_created: result.repoCreated,
      model_card: contents.userReadme ? 'README.md of the folder' : 'generated', files: entries.map((e) => e.path), left_out: contents.skipped,
    }, null, 2));
    return 0;
  },
};
