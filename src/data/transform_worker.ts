// A data worker thread: decodes and transforms images sent by TransformPool and sends the pixels
// back (transferred, not copied).
import { parentPort } from 'node:worker_threads';
import { prepareImage, type PrepareJob } from './prepare.js';

parentPort!.on('message', (msg: { id: number; job: PrepareJob }) => {
  prepareImage(msg.job).then(
    (pixels) => parentPort!.postMessage({ id: msg.id, pixels }, [pixels.buffer]),
    (e: Error) => parentPort!.postMessage({ id: msg.id, error: e.message, name: e.name }),
  );
});
