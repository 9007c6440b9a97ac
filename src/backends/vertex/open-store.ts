// The bucket store of the vertex backend, or, for a dry run without credentials, its offline
// stand-in. Without credentials anything else fails here, in one line, before the auth library
// probes the metadata server for half a minute.
import type { ObjectStore } from "../store.ts";
import { credentialsFor, missingCredentials } from "./credentials.ts";
import { OfflineStore, Unchecked } from "./offline.ts";
import { openGcsStore } from "./store.ts";

export interface OpenedStore {
  store: ObjectStore;
  /** Set when the store is offline: what it could not check. */
  unchecked?: Unchecked;
}

export async function openVertexStore(options: {
  bucket: string;
  project?: string;
  env: Readonly<Record<string, string | undefined>>;
  dryRun: boolean;
  /** The services the command will use (the store alone, or Vertex AI too). */
  services?: readonly ("gcs" | "vertex")[];
}): Promise<OpenedStore> {
  const adc = credentialsFor(options.env, options.services ?? ["gcs"]);
  if (adc.found) return { store: await openGcsStore(options) };
  if (!options.dryRun) throw missingCredentials(adc);
  const unchecked = new Unchecked();
  return { store: new OfflineStore(options.bucket, unchecked), unchecked };
}
