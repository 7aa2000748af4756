// BlendCore: the job and event contract, validation, ranking aggregation and configuration limits.
