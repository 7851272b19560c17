export { resolveRepoFiles } from './resolve.js';
export { hubCacheDir, repoCacheDir, repoFolderName, cachedSnapshot, checkRepoId, type RepoType } from './cache.js';
export { snapshotDownload, hubEndpoint, isOffline, HubError, type DownloadProgress, type SnapshotOptions } from './download.js';
export { resolveModel, resolveDataset, selectDiffusersFiles, isCompleteSnapshot, type ResolveOptions } from './resolve.js';
export { stderrProgress } from './progress.js';
