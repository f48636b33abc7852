"""What tests, bench and demo share: throwaway catalogs, image servers, the API server, load, /proc facts."""
