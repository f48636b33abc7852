# A small image that carries only the ImageNet VGG16 weights (no top, ~59 MB), for pods without internet.
# The init container in indexer-cronjobs.yaml copies the file into an emptyDir and the indexer loads it
# through VGG16_WEIGHTS=/weights/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5.
#
# On a machine with internet access, in an empty folder:
#   curl -fLO https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
#   docker build -f /path/to/repo/deploy/kubernetes/vgg16-weights.Dockerfile \
#     -t registry.example.com/imgsearch-vgg16-weights:imagenet-notop .
#   docker push registry.example.com/imgsearch-vgg16-weights:imagenet-notop
#
# The md5 below is the one Keras itself checks for this file (keras.applications.vgg16), so a truncated
# or different download fails the build. These are the same weights as VGG16_WEIGHTS=imagenet: the
# fingerprint stored in the index is identical, and vectors are reused across the two spellings.
# A different weights file is a model change: new tag, then a full run (deploy/README.md).
FROM busybox:1.37
COPY vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 /vgg16/
RUN echo "6d6bbae143d832006294945121d1f1fc  /vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5" | md5sum -c - \
 && chmod 0444 /vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5
USER 10001:10001
