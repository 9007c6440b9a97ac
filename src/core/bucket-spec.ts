// The bucket avatar creates: private by construction (uniform access, public access prevention).
import { MANAGED_BY } from "./names.ts";

export interface BucketSpec {
  name: string;
  location: string;
  iamConfiguration: { uniformBucketLevelAccess: { enabled: true }; publicAccessPrevention: "enforced" };
  labels: Record<string, string>;
}

export function bucketSpec(name: string, region: string): BucketSpec {
  return {
    name,
    location: region.toUpperCase(),
    iamConfiguration: { uniformBucketLevelAccess: { enabled: true }, publicAccessPrevention: "enforced" },
    labels: { "managed-by": MANAGED_BY },
  };
}
